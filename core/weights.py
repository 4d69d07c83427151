"""Fetch and verify released weights without ever destroying a file.

    python -m core.weights DIR [--revision REV] [--no-wav2vec2] [--base-url URL] [--verify-only]
    python -m core.weights --sr DIR [--base-url URL]        # AP-BWE 16kto48k (config.json + g_16kto48k)

The hub is `--base-url`, else `TTS_WEIGHTS_BASE_URL`, else `HF_ENDPOINT` (the Hugging Face variable for a mirror),
else https://huggingface.co. `TTS_WEIGHTS_MANIFEST` names a JSON file {"spark": [...], "sr": [...]} of
{"path", "size", "sha256"} entries that replaces the pinned file lists, for a mirror serving another checkpoint
with the same layout (a fine-tune with its own digests); every rule below still applies to it.

Used by Modal's `download` function (app.py) and by people who self-host. Rules:
- Every digest is a full sha256 (docs/reference/spark-tts.md#checkpoint-layout, docs/reference/ap-bwe.md). A file
  whose size or digest is wrong is moved aside to `NAME.rejected-<first 12 hex of what was found>`, never deleted, and
  the report says which digest was expected and which was found.
- A download into a directory that already holds another checkpoint (a fine-tune's root weights, or a
  `.weights.json` stamp naming another repository or revision) is refused before anything is written.
- Downloads resume: a partial `NAME.part` is continued with an HTTP Range request; a complete, verified file is
  never fetched again.
Only the standard library is used for HTTP so the same code runs in the Modal download image and on a bare host.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

SPARK_REPO = "SparkAudio/Spark-TTS-0.5B"
SPARK_REVISION = "642071559bfc6346c2359d19dcb6be3f9dd8a05d"
HF_BASE_URL = "https://huggingface.co"
APBWE_REPO = "rsxdalv/AP-BWE"  # third-party mirror, claimed byte-identical (docs/reference/ap-bwe.md)
APBWE_REVISION = "main"
APBWE_SUBDIR = "weights/16kto48k"
STAMP = ".weights.json"
BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class ExpectedFile:
    """A released file: its path in the repository, size in bytes, and full sha256 (None: size only)."""

    path: str
    size: int | None
    sha256: str | None

    def __post_init__(self) -> None:
        if self.sha256 is not None and len(self.sha256) != 64:
            raise ValueError(f"{self.path}: sha256 must be the full 64 hex characters")


# docs/reference/spark-tts.md#checkpoint-layout at SPARK_REVISION. The small LLM/tokenizer and config files are
# published only with abbreviated digests: their sizes are checked, and the loader validates their content.
SPARK_FILES: tuple[ExpectedFile, ...] = (
    ExpectedFile("config.yaml", 169, "49a07abffcdfb5358e91eda83b1f4f8068f54b0a4e1ef1ef6ac22d9a312a7ae3"),
    ExpectedFile("LLM/config.json", 658, None),
    ExpectedFile("LLM/model.safetensors", 2_026_568_968,
                 "54825baf0a2f6076eb3c78fa1d22a95aee225f59070a8b295f8169db860eb109"),
    ExpectedFile("LLM/tokenizer.json", 14_129_172, None),
    ExpectedFile("LLM/tokenizer_config.json", 2_579_652, None),
    ExpectedFile("LLM/added_tokens.json", 508_522, None),
    ExpectedFile("BiCodec/config.yaml", 1_164, None),
    ExpectedFile("BiCodec/model.safetensors", 625_518_756,
                 "e9940cd48d4446e4340ced82d234bf5618350dd9f5db900ebe47a4fdb03867ec"),
)  # fmt: skip
WAV2VEC2_FILES: tuple[ExpectedFile, ...] = (
    ExpectedFile("wav2vec2-large-xlsr-53/config.json", 1_768, None),
    ExpectedFile("wav2vec2-large-xlsr-53/preprocessor_config.json", 212, None),
    ExpectedFile("wav2vec2-large-xlsr-53/pytorch_model.bin", None,
                 "314340227371a608f71adcd5f0de5933824fe77e55822aa4b24dba9c1c364dcb"),
)  # fmt: skip
APBWE_FILES: tuple[ExpectedFile, ...] = (
    ExpectedFile("config.json", 515, "d722dcda233d6b00669cc37fa1286d9a49ad8d18082f28c20f895303e706852e"),
    ExpectedFile(
        "g_16kto48k", 119_097_961, "305a05dcab7dc29ffba09d32692d7a34550fc8fbdf338013641ff5d39a3cb285"
    ),
)


class WeightsError(RuntimeError):
    """The download cannot go ahead, or files failed verification (the message says which and why)."""


class HubUnreachableError(WeightsError):
    """The hub or mirror did not answer (no network, refused, timed out); the message names the URL and why."""


@dataclass(frozen=True)
class FileReport:
    path: str
    size: int | None
    status: str  # verified | size ok | MISSING | SIZE MISMATCH | SHA256 MISMATCH | stored (no reference)
    sha256: str | None = None
    expected_sha256: str | None = None
    moved_to: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("verified", "size ok", "stored (no reference)")

    def describe(self) -> str:
        if self.status == "SHA256 MISMATCH":
            where = f"; kept as {self.moved_to}" if self.moved_to else ""
            return f"{self.path}: sha256 expected {self.expected_sha256}, found {self.sha256}{where}"
        if self.status == "SIZE MISMATCH":
            where = f"; kept as {self.moved_to}" if self.moved_to else ""
            return f"{self.path}: {self.size} bytes, not the published size{where}"
        return f"{self.path}: {self.status}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(BLOCK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(root: Path, expected: ExpectedFile) -> FileReport:
    path = root / expected.path
    if not path.is_file():
        return FileReport(expected.path, None, "MISSING", expected_sha256=expected.sha256)
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        return FileReport(expected.path, size, "SIZE MISMATCH", expected_sha256=expected.sha256)
    if expected.sha256 is None:
        return FileReport(expected.path, size, "size ok")
    digest = sha256_file(path)
    status = "verified" if digest == expected.sha256 else "SHA256 MISMATCH"
    return FileReport(expected.path, size, status, digest, expected.sha256)


def set_aside(root: Path, report: FileReport) -> FileReport:
    """Move a file that failed verification out of the loader's way; never delete it (2 GB, maybe the only copy)."""
    if report.status not in ("SIZE MISMATCH", "SHA256 MISMATCH"):
        return report
    path = root / report.path
    found = report.sha256 or sha256_file(path)
    target = path.with_name(f"{path.name}.rejected-{found[:12]}")
    os.replace(path, target)
    return FileReport(
        report.path,
        report.size,
        report.status,
        found,
        report.expected_sha256,
        target.relative_to(root).as_posix(),
    )


def verify_tree(
    root: Path, expected: Sequence[ExpectedFile], *, set_aside_bad: bool = True
) -> list[FileReport]:
    """Reports for the expected files (bad ones moved aside), then every other file under `root` (sizes)."""
    reports = [verify_file(root, item) for item in expected]
    if set_aside_bad:
        reports = [set_aside(root, r) for r in reports]
    known = {item.path for item in expected} | {r.moved_to for r in reports if r.moved_to}
    if root.is_dir():
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            if (
                rel not in known
                and rel != STAMP
                and not rel.startswith(".cache/")
                and not rel.endswith(".part")
            ):
                reports.append(FileReport(rel, path.stat().st_size, "stored (no reference)"))
    return reports


def format_reports(reports: list[FileReport]) -> str:
    width = max([len(r.path) for r in reports] + [4])
    lines = [f"{'file':<{width}}  {'bytes':>14}  status", f"{'-' * width}  {'-' * 14}  {'-' * 22}"]
    for r in reports:
        size = f"{r.size:,}" if r.size is not None else "-"
        lines.append(f"{r.path:<{width}}  {size:>14}  {r.status}")
    lines += [f"  {r.describe()}" for r in reports if not r.ok]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- target checks
def check_target(root: Path, repo: str, revision: str) -> None:
    """Refuse a directory that holds a different checkpoint: never overwrite a fine-tune with the base model."""
    if not root.exists():
        return
    if not root.is_dir():
        raise WeightsError(f"{root} exists and is not a directory")
    stamp = root / STAMP
    if stamp.is_file():
        try:
            held = json.loads(stamp.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise WeightsError(f"{stamp} is unreadable ({exc}); move it aside to download here") from exc
        if (held.get("repo"), held.get("revision")) != (repo, revision):
            raise WeightsError(
                f"{root} holds {held.get('repo')}@{held.get('revision')}; refusing to write {repo}@{revision} "
                "over it (choose another directory)"
            )
        return
    root_weights = sorted(p.name for p in root.glob("*.safetensors")) + sorted(
        p.name for p in root.glob("*.bin")
    )
    if root_weights or (root / "config.json").is_file():
        found = ", ".join(root_weights) or "config.json"
        raise WeightsError(
            f"{root} already holds a checkpoint with LLM files at its root ({found}), e.g. a fine-tune; "
            f"refusing to download {repo} over it (choose another directory)"
        )


def write_stamp(root: Path, repo: str, revision: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / STAMP).write_text(json.dumps({"repo": repo, "revision": revision}) + "\n")


# ---------------------------------------------------------------------------------------------- fetching
def file_url(base_url: str, repo: str, revision: str, path: str) -> str:
    return f"{base_url.rstrip('/')}/{repo}/resolve/{revision}/{path}"


def fetch(url: str, dest: Path, *, timeout_s: float = 60.0) -> None:
    """Download `url` to `dest` through `dest.part`, resuming a partial file with an HTTP Range request."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)  # noqa: S310 - operator-chosen URL
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the part file is already complete
            os.replace(part, dest)
            return
        raise WeightsError(f"{url}: HTTP {exc.code}") from exc
    except (
        urllib.error.URLError,
        http.client.HTTPException,
        OSError,
    ) as exc:  # no route, refused, DNS, timeout
        raise HubUnreachableError(f"{url}: {getattr(exc, 'reason', None) or exc}") from exc
    with response:
        resumed = offset and response.status == 206
        with part.open("ab" if resumed else "wb") as handle:
            try:
                shutil.copyfileobj(response, handle, length=BLOCK)
            except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:  # the part file is kept
                raise HubUnreachableError(f"{url}: connection lost ({exc})") from exc
    os.replace(part, dest)


def download_files(
    root: Path,
    files: Sequence[ExpectedFile],
    url_for: Callable[[str], str],
    *,
    log: Callable[[str], None] = print,
) -> list[FileReport]:
    """Fetch each file that is not already verified, then verify everything (bad files are set aside)."""
    for item in files:
        if verify_file(root, item).ok:
            log(f"have {item.path}")
            continue
        log(f"fetching {item.path}")
        fetch(url_for(item.path), root / item.path)
    return verify_tree(root, files)


def download_spark(
    root: Path,
    *,
    revision: str = SPARK_REVISION,
    include_wav2vec2: bool = True,
    base_url: str = HF_BASE_URL,
    log: Callable[[str], None] = print,
    files: Sequence[ExpectedFile] | None = None,
) -> list[FileReport]:
    check_target(root, SPARK_REPO, revision)
    write_stamp(root, SPARK_REPO, revision)
    files = tuple(SPARK_FILES if files is None else files) + (WAV2VEC2_FILES if include_wav2vec2 else ())
    return download_files(root, files, lambda p: file_url(base_url, SPARK_REPO, revision, p), log=log)


def download_apbwe(
    root: Path,
    *,
    base_url: str = HF_BASE_URL,
    log: Callable[[str], None] = print,
    files: Sequence[ExpectedFile] | None = None,
) -> list[FileReport]:
    check_target(root, APBWE_REPO, APBWE_REVISION)
    write_stamp(root, APBWE_REPO, APBWE_REVISION)
    return download_files(
        root,
        APBWE_FILES if files is None else files,
        lambda p: file_url(base_url, APBWE_REPO, APBWE_REVISION, f"{APBWE_SUBDIR}/{p}"),
        log=log,
    )


def load_manifest(path: str) -> dict[str, tuple[ExpectedFile, ...]]:
    """TTS_WEIGHTS_MANIFEST: the file lists to fetch and verify instead of the pinned ones."""
    try:
        data = json.loads(Path(path).read_text())
        return {
            kind: tuple(ExpectedFile(str(e["path"]), e.get("size"), e.get("sha256")) for e in data[kind])
            for kind in ("spark", "sr")
            if kind in data
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"TTS_WEIGHTS_MANIFEST {path}: unreadable ({exc})") from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="target directory (created if missing)")
    parser.add_argument("--sr", action="store_true", help="fetch AP-BWE 16kto48k instead of Spark-TTS-0.5B")
    parser.add_argument(
        "--revision", default=SPARK_REVISION, help="Spark-TTS revision (default: the pinned one)"
    )
    parser.add_argument(
        "--no-wav2vec2", action="store_true", help="skip wav2vec2 (only voice cloning needs it)"
    )
    parser.add_argument(
        "--base-url",
        default=os.environ.get("TTS_WEIGHTS_BASE_URL") or os.environ.get("HF_ENDPOINT") or HF_BASE_URL,
        help="hub or mirror serving <repo>/resolve/<revision>/<path>",
    )
    parser.add_argument("--verify-only", action="store_true", help="check what is there; fetch nothing")
    args = parser.parse_args(argv)
    try:
        manifest = (
            load_manifest(os.environ["TTS_WEIGHTS_MANIFEST"])
            if os.environ.get("TTS_WEIGHTS_MANIFEST")
            else {}
        )
        spark_files, sr_files = manifest.get("spark"), manifest.get("sr")
        if args.verify_only:
            files = (
                (sr_files or APBWE_FILES)
                if args.sr
                else (spark_files or SPARK_FILES) + (() if args.no_wav2vec2 or manifest else WAV2VEC2_FILES)
            )
            reports = verify_tree(args.directory, files)
        elif args.sr:
            reports = download_apbwe(args.directory, base_url=args.base_url, files=sr_files)
        else:
            if args.revision != SPARK_REVISION:
                print(
                    f"WARNING: revision {args.revision} is not the pinned {SPARK_REVISION}; digests may differ"
                )
            reports = download_spark(
                args.directory,
                revision=args.revision,
                base_url=args.base_url,
                include_wav2vec2=not args.no_wav2vec2 and not manifest,
                files=spark_files,
            )
    except HubUnreachableError as exc:
        # One line, no traceback: the usual cause is a machine without access to huggingface.co.
        print(
            f"error: cannot reach the hub ({exc}); set HF_ENDPOINT (or --base-url) to a mirror, or copy the files "
            "from a machine that has them and check them with --verify-only",
            file=sys.stderr,
        )
        return 2
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_reports(reports))
    bad = [r for r in reports if not r.ok]
    if bad:
        print(f"{len(bad)} file(s) failed verification (set aside, not deleted)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
