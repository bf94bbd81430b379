"""Civitai's public REST API as its reference documents it (developer.civitai.com, "Model versions"
and "Models"; the REST API reference wiki): the fields of each documented example and the JSON
type of each, which our answers are checked against field by field. Values are not copied: only
what a client parses (name and type; None where the example shows null)."""

from __future__ import annotations

#: GET /api/v1/model-versions/{id} (and by-hash): the documented example's fields.
VERSION = {
    "id": int, "modelId": int, "name": str, "description": (str, type(None)), "baseModel": str, "baseModelType": str,
    "air": str, "status": str, "availability": str, "nsfwLevel": int, "createdAt": str, "updatedAt": str,
    "publishedAt": str, "uploadType": str, "usageControl": str, "trainedWords": list,
    "earlyAccessConfig": type(None), "earlyAccessEndsAt": type(None), "trainingStatus": type(None),
    "trainingDetails": type(None), "stats": dict, "model": dict, "files": list, "images": list, "downloadUrl": str,
}
VERSION_STATS = {"downloadCount": int, "thumbsUpCount": int, "thumbsDownCount": int}
VERSION_MODEL = {"name": str, "type": str, "nsfw": bool, "poi": bool, "minor": bool}
#: Each entry of a version's files[].
FILE = {"id": int, "name": str, "type": str, "sizeKB": float, "metadata": dict, "pickleScanResult": str,
        "virusScanResult": str, "hashes": dict, "downloadUrl": str, "primary": bool}
FILE_METADATA = {"format": str, "size": (str, type(None)), "fp": str}
#: GET /api/v1/models items and GET /api/v1/models/{id}.
MODEL = {"id": int, "name": str, "description": (str, type(None)), "type": str, "poi": bool, "nsfw": bool,
         "allowNoCredit": bool, "allowCommercialUse": list, "allowDerivatives": bool, "allowDifferentLicense": bool,
         "stats": dict, "creator": dict, "tags": list, "modelVersions": list}
MODEL_STATS = {"downloadCount": int, "favoriteCount": int, "commentCount": int, "ratingCount": int, "rating": (int, float)}
CREATOR = {"username": str, "image": (str, type(None))}
#: The list's metadata with cursor paging.
LIST_METADATA = {"pageSize": int, "currentPage": int}
#: Hash names the documented files carry that a textual inversion's file has here too.
HASH_KEYS = ("AutoV2", "SHA256")
MODEL_TYPES = ("Checkpoint", "TextualInversion", "Hypernetwork", "AestheticGradient", "LORA", "Controlnet", "Poses")
SCAN_RESULTS = ("Pending", "Success", "Danger", "Error")


def check(document: dict, shape: dict, where: str) -> None:
    """Every documented field is present with the documented JSON type."""
    for key, kind in shape.items():
        assert key in document, f"{where}: missing {key!r}"
        assert isinstance(document[key], kind), f"{where}.{key}: {type(document[key]).__name__}, expected {kind}"
