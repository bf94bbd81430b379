"""Real Hugging Face clients against a registry, run as a subprocess because huggingface_hub reads
``HF_ENDPOINT`` when it is imported: ``python -m tests.integration.hub_client JOB.json`` with
HF_ENDPOINT set prints one JSON document of what the clients got.

Jobs: ``download`` (``hf_hub_download`` of each file, plus ``HfApi.model_info``, plus a missing
file's exception), and ``diffusers`` (``load_textual_inversion(repo)`` on a small pipeline built with
the corpus tokenizer; for sdxl the two calls, one per text encoder, as diffusers documents)."""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from pathlib import Path
from typing import Any


def download(job: dict[str, Any]) -> dict[str, Any]:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    out: dict[str, Any] = {"files": {}}
    for filename in job["files"]:
        path = Path(hf_hub_download(job["repo"], filename, revision=job.get("revision"), cache_dir=job["cache"]))
        out["files"][filename] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                  "snapshot": path.parent.name}
    info = HfApi().model_info(job["repo"], revision=job.get("revision"))
    out["info"] = {"id": info.id, "sha": info.sha, "siblings": [s.rfilename for s in info.siblings or []],
                   "author": info.author, "library_name": info.library_name}
    errors = {}
    for name, call in (
            ("entry", lambda: hf_hub_download(job["repo"], "nothing.safetensors", cache_dir=job["cache"])),
            ("revision", lambda: hf_hub_download(job["repo"], job["files"][0], revision="v999", cache_dir=job["cache"])),
            ("repo", lambda: hf_hub_download(job["repo"] + "-missing", job["files"][0], cache_dir=job["cache"]))):
        try:
            call()
            errors[name] = None
        except (EntryNotFoundError, RevisionNotFoundError, RepositoryNotFoundError) as exc:
            errors[name] = type(exc).__name__
    out["errors"] = errors
    return out


def diffusers_load(job: dict[str, Any]) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file

    from pseudoword.runtime.demo_pipeline import build_sd1, build_sdxl

    expected = load_file(job["expected"])
    if job["architecture"] == "sdxl":
        pipe = build_sdxl(job["tokenizer"], job["tokenizer_2"])
        encoders = [("clip_l", pipe.text_encoder, pipe.tokenizer, None),
                    ("clip_g", pipe.text_encoder_2, pipe.tokenizer_2, "learned_embeds_2.safetensors")]
    else:
        pipe = build_sd1(job["tokenizer"])
        encoders = [("emb_params", pipe.text_encoder, pipe.tokenizer, None)]
    out: dict[str, Any] = {}
    for key, encoder, tok, weight_name in encoders:
        # The new rows are overwritten anyway: skip transformers' covariance-matched initialisation.
        encoder.resize_token_embeddings = functools.partial(type(encoder).resize_token_embeddings, encoder,
                                                            mean_resizing=False)
        kwargs: dict[str, Any] = {"cache_dir": job["cache"]}
        if job["architecture"] == "sdxl":
            kwargs.update(text_encoder=encoder, tokenizer=tok, token=job["trigger"])
        if weight_name:
            kwargs["weight_name"] = weight_name
        pipe.load_textual_inversion(job["repo"], **kwargs)
        vectors = expected[key]
        tokens = [job["trigger"]] + [f"{job['trigger']}_{i}" for i in range(1, vectors.shape[0])]
        ids = tok.convert_tokens_to_ids(tokens)
        loaded = encoder.get_input_embeddings().weight[ids].detach()
        out[key] = {"equal": bool(torch.equal(loaded, vectors.to(loaded.dtype))), "rows": len(ids),
                    "max_diff": float((loaded - vectors.to(loaded.dtype)).abs().max())}
    return out


if __name__ == "__main__":
    job = json.loads(Path(sys.argv[1]).read_text())
    result = download(job) if job["job"] == "download" else diffusers_load(job)
    print(json.dumps(result))
