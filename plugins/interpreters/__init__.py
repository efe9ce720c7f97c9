"""Built-in interpreters: Captum's attribution methods and the differentiable Grad-CAMs."""
