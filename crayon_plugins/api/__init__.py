"""Everything a plugin author imports, in one place (as ``captum.attr`` or ``timm.layers``).

    from crayon_plugins.api import FineTuning, Batch, Need, RefinementContext, hookimpl

- the hooks (:mod:`.hookspecs`: their docstrings are the plugin API's reference) and ``hookimpl``;
- the contract of each component kind (:mod:`.components`) and the bases that do the work:
  :class:`FineTuning` for loss-based refiners, :class:`FolderDataset` for datasets on disk;
- the data, model and annotation records the contracts speak of, and the helpers built-ins use
  (map arithmetic, the differentiable Grad-CAMs, CRAYON's energy terms, the training loop).

The kit that checks a plugin against its contract is :mod:`crayon_plugins.testing`.
"""

from crayon_plugins.annotation.records import NOT_ANNOTATED, Annotations, Answer, AttentionMaps, MapsToJudge, NeuronsToJudge, Question, positions
from crayon_plugins.api.components import (
    AnnotationSource,
    AnswerSet,
    Backbone,
    Component,
    ConceptExtractor,
    Dataset,
    DifferentiableInterpreter,
    DrawnRegions,
    Interpreter,
    Metric,
    Need,
    NeuronJudgements,
    Params,
    Predictions,
    RefinementContext,
    Refiner,
)
from crayon_plugins.api.finetuning import Batch, FineTuning, rows
from crayon_plugins.api.folders import FolderDataset, Item, Row, hold_out, image_folder, read_csv, read_whitespace_table, resolve_root
from crayon_plugins.api.hookspecs import hookimpl
from crayon_plugins.config import Optimisation
from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.data.items import FileImages, FileMasks, Items, Loading, TensorItems, as_items, random_resized_crop_box
from crayon_plugins.errors import ConfigError, CrayonError, DataError, PluginError
from crayon_plugins.model.checkpoints import load_network_weights, read_state_dict
from crayon_plugins.model.classifier import ChannelMask, Classifier
from crayon_plugins.model.concepts import NeuronConcepts
from crayon_plugins.model.features import predict
from crayon_plugins.model.gradcam import GradCam, GradiaGradCam
from crayon_plugins.model.maps import bounding_boxes, energy_on_mask, grid_masks, normalise_maps
from crayon_plugins.training.energy import attention_parts, attention_terms, crayon_normalise, energy_no, energy_yes
from crayon_plugins.training.loop import fit, log_term, to_device
from crayon_plugins.training.selection import ORDER, Selection, choose_epoch, validation_metrics

__all__ = [
    "ORDER",
    "choose_epoch",
    "random_resized_crop_box",
    "validation_metrics",
    "NOT_ANNOTATED",
    "AnnotationSource",
    "Annotations",
    "Answer",
    "AnswerSet",
    "AttentionMaps",
    "Backbone",
    "Batch",
    "ChannelMask",
    "Classifier",
    "Component",
    "ConceptExtractor",
    "ConfigError",
    "CrayonError",
    "DataError",
    "Dataset",
    "DifferentiableInterpreter",
    "DrawnRegions",
    "FileImages",
    "FileMasks",
    "FineTuning",
    "FolderDataset",
    "GradCam",
    "GradiaGradCam",
    "ImageSet",
    "Interpreter",
    "Item",
    "Items",
    "Loading",
    "MapsToJudge",
    "Metric",
    "Need",
    "NeuronConcepts",
    "NeuronJudgements",
    "NeuronsToJudge",
    "Optimisation",
    "Params",
    "PluginError",
    "Predictions",
    "Question",
    "RefinementContext",
    "Refiner",
    "Row",
    "Selection",
    "TensorItems",
    "as_items",
    "attention_parts",
    "attention_terms",
    "bounding_boxes",
    "crayon_normalise",
    "energy_no",
    "energy_on_mask",
    "energy_yes",
    "fit",
    "grid_masks",
    "hold_out",
    "hookimpl",
    "image_folder",
    "load_network_weights",
    "log_term",
    "normalise_maps",
    "positions",
    "predict",
    "read_csv",
    "read_state_dict",
    "read_whitespace_table",
    "resolve_root",
    "rows",
    "to_device",]
