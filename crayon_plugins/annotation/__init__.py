"""Questions and answers: the records annotators fill, budgets, panels and their agreement; and the
surfaces where people answer (the annotation page, answers files, Label Studio, concept sheets)."""
