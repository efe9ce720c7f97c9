"""The images a run reads: one split of a dataset (:class:`~.image_set.ImageSet`), its images and masks
streamed in minibatches (:mod:`.items`)."""

from crayon_plugins.data.image_set import ImageSet
from crayon_plugins.data.items import FileImages, FileMasks, Items, Loading, TensorItems
from crayon_plugins.utils.moved import moved_names

__all__ = ["FileImages", "FileMasks", "ImageSet", "Items", "Loading", "TensorItems"]

__getattr__ = moved_names(__name__, {
    **dict.fromkeys(("Answer", "NOT_ANNOTATED", "MapsToJudge", "positions", "Annotations", "NeuronsToJudge", "AttentionMaps"), "crayon_plugins.annotation.records"),
    "NeuronConcepts": "crayon_plugins.model.concepts",
})
