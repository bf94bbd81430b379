"""What picklescan (the scanner the Hugging Face Hub and Civitai run on uploads) finds in a file,
in Civitai's terms (``pickleScanResult``, ``pickleScanMessage``).

The scan only reads opcodes; nothing is unpickled. It is a report for people and tools, not the
safety barrier: files are still only ever loaded with PyTorch's ``weights_only`` loader
(safe_pickle.py), after the zip's sizes were checked, so a scan never decompresses a bomb.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from picklescan.scanner import SafetyLevel, ScanResult, scan_pickle_bytes, scan_pytorch

#: picklescan logs every dangerous import as a warning with the file's id; our refusal says it.
logging.getLogger("picklescan").setLevel(logging.ERROR)
_SAFETENSORS_MIN = 9


@dataclass(frozen=True)
class PickleScan:
    result: str  # Civitai's pickleScanResult: "Success", "Danger" or "Error"
    message: str  # Civitai's pickleScanMessage
    imports: tuple[str, ...] = ()  # every module.name the pickle imports
    dangerous: tuple[str, ...] = ()  # those picklescan marks dangerous or does not know


def pickle_imports(data: bytes) -> tuple[list[str], list[str]]:
    """(all imports, the dangerous or unknown ones) of a raw pickle stream, from its opcodes."""
    result = scan_pickle_bytes(io.BytesIO(data), "upload")
    return _names(result)


def scan_file(data: bytes) -> PickleScan:
    """Scan an embedding file as uploaded: safetensors holds no pickle; torch files are scanned."""
    if len(data) >= _SAFETENSORS_MIN and data[8:9] == b"{":
        return PickleScan("Success", "No Pickle imports")
    try:
        result = scan_pytorch(io.BytesIO(data), "upload")
    except Exception as exc:  # noqa: BLE001 - a file picklescan cannot parse: reported, not raised
        return PickleScan("Error", f"picklescan could not scan the file: {type(exc).__name__}")
    imports, dangerous = _names(result)
    if result.scan_err:
        return PickleScan("Error", "picklescan could not parse the whole pickle", tuple(imports), tuple(dangerous))
    if dangerous or result.issues_count:
        return PickleScan("Danger", f"Dangerous import detected: {', '.join(dangerous)[:500]}",
                          tuple(imports), tuple(dangerous))
    if not imports:
        return PickleScan("Success", "No Pickle imports")
    return PickleScan("Success", f"{len(imports)} import(s) picklescan knows as safe: {', '.join(imports)[:500]}",
                      tuple(imports))


def _names(result: ScanResult) -> tuple[list[str], list[str]]:
    imports = sorted({f"{g.module}.{g.name}" for g in result.globals})
    dangerous = sorted({f"{g.module}.{g.name}" for g in result.globals if g.safety is not SafetyLevel.Innocuous})
    return imports, dangerous
