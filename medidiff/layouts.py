"""Where synthetic cases go on disk: medidiff's own layout, BraTS 2023 / 2021, nnU-Net v2 raw.

``medidiff generate --layout NAME`` writes each case straight into its layout, and
``medidiff export-dataset nnunet`` builds an nnU-Net data set (optionally mixed with real training
cases) from any generated folder; both take paths from this module only::

    medidiff   OUT/case_0000/{t1n,t1c,t2w,t2f,seg}.nii.gz
    brats      OUT/BraTS-SYN-00000-000/BraTS-SYN-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz
    brats2021  OUT/BraTS2021_SYN00000/BraTS2021_SYN00000_{t1,t1ce,t2,flair,seg}.nii.gz  (ET = 4)
    nnunet     OUT/Dataset501_NAME/imagesTr/SYN_00000_{0000..0003}.nii.gz
               OUT/Dataset501_NAME/labelsTr/SYN_00000.nii.gz, OUT/Dataset501_NAME/dataset.json

Case folders hold ``provenance.json`` (written last: its presence marks the case finished, see
``medidiff.cli.generate_cmd.plan_cases``) and ``preview.png`` beside the volumes; nnU-Net keeps
them in ``Dataset.../medidiff/`` (``SYN_00000.provenance.json``, ``SYN_00000.png``) so that
``imagesTr``/``labelsTr`` hold only what nnU-Net reads, and its volumes get no JSON sidecars (the
provenance is in each NIfTI header's comment extension and in that file).

Synthetic ids can never be read as real cases: BraTS 2023+ cohorts are GLI, MEN, MET, PED, SSA
(and GoAT), never SYN, and ``BraTS-SYN-xxxxx-000`` keeps the ``-NNN`` time point that readers
(medidiff's included) parse the subject from. BraTS 2021 ids are ``BraTS2021_NNNNN``, digits only:
``BraTS2021_SYN00000`` keeps the ``<case>_<modality>.nii.gz`` pattern that medidiff's reader
matches and the ``BraTS*`` folder name that nnU-Net's BraTS 2021 conversion builds file names from,
while a tool that expects a number there fails loudly instead of filing the case among real ones (a free number range would be silent: nothing marks 90000 as
synthetic once the files travel without their headers).

nnU-Net labels: the files hold medidiff's values (0 background, 1 NCR, 2 SNFH, 3 ET; 2021 data
map 4 -> 3), consecutive as nnU-Net requires, and ``dataset.json`` asks for region-based training
on the BraTS regions (``whole_tumor`` [1, 2, 3], ``tumor_core`` [1, 3], ``enhancing_tumor`` [3]);
``regions_class_order`` [2, 1, 3] turns predicted regions back into labels (WT voxels become 2,
TC overwrites with 1, ET with 3), as nnU-Net's ``LabelManager.convert_logits_to_segmentation``
applies it in that order.

Export copies nothing it can hard-link: a hard link costs no space (a BraTS-sized set is tens of
GB), survives moving or deleting the generated folder (a symlink would dangle), and medidiff never
writes a file in place (every write is a new file renamed over the old name), so regenerating the
source leaves the exported file as it was. Across file systems, or with ``--copy``, files are
copied. Real cases whose files are ``.nii`` or whose labels need the release's label map are
re-saved with their own header (never stamped synthetic); synthetic files keep theirs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medidiff.data.brats import BRATS2021_SUFFIXES, MODALITIES, LabelConvention
from medidiff.errors import MedidiffError

__all__ = ["LayoutName", "LAYOUTS", "CaseFiles", "Layout", "CaseFolderLayout", "NnunetLayout", "make_layout",
           "PROVENANCE", "NNUNET_LABELS", "NNUNET_REGIONS_CLASS_ORDER", "check_dataset_id", "check_dataset_name",
           "nnunet_dataset_json", "write_nnunet_dataset_json", "check_dataset_id_free", "find_generated", "finished_cases",
           "export_nnunet", "EXPORT_RECORD", "GeneratedSet"]

LayoutName = Literal["medidiff", "brats", "brats2021", "nnunet"]
LAYOUTS: tuple[str, ...] = ("medidiff", "brats", "brats2021", "nnunet")
PROVENANCE = "provenance.json"
EXPORT_RECORD = "export.json"  # Dataset.../medidiff/export.json: what export-dataset put in the set
FILE_ENDING = ".nii.gz"

# region-based BraTS training in nnU-Net v2 (docs/region_based_training.md); medidiff's label values
NNUNET_LABELS: dict[str, int | list[int]] = {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [1, 3],
                                             "enhancing_tumor": [3]}
NNUNET_REGIONS_CLASS_ORDER: list[int] = [2, 1, 3]
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_BRATS2021_FILE = {m: s for s, m in BRATS2021_SUFFIXES.items()}  # t1n -> t1, ...


@dataclass(frozen=True)
class CaseFiles:
    """Every path of one synthetic case in a layout."""

    case_id: str
    images: dict[str, Path]  # modality -> volume, in channel order
    label: Path
    provenance: Path  # written last; its presence marks the case finished
    preview: Path
    folder: Path | None  # a folder that holds this case only (removed whole), or None


class Layout:
    """Paths of synthetic cases under a root folder (``root(out)``)."""

    name: str = ""
    label_convention: LabelConvention | None = None  # the one its label files must use, if any
    sidecars: bool = True  # write_nifti's JSON sidecar beside each volume
    needs_labels: bool = False

    def root(self, out: Path) -> Path:
        return Path(out)

    def case_id(self, index: int) -> str:
        raise NotImplementedError

    def index_of(self, case_id: str) -> int | None:
        raise NotImplementedError

    def case_files(self, root: Path, case_id: str, modalities: Sequence[str]) -> CaseFiles:
        raise NotImplementedError

    def finished(self, root: Path) -> dict[str, Path]:
        """case id -> provenance file of every finished case under ``root`` (any index)."""
        raise NotImplementedError

    def started(self, root: Path) -> list[str]:
        """Case ids of this layout with any file under ``root``, finished or not."""
        raise NotImplementedError

    def remove(self, root: Path, case_id: str, modalities: Sequence[str]) -> None:
        """Delete whatever a (finished, interrupted or conflicting) case left under ``root``."""
        files = self.case_files(root, case_id, modalities)
        # the finished marker goes first: a removal cut short must leave an unfinished case (redone
        # next time), never a "finished" one with volumes missing
        files.provenance.unlink(missing_ok=True)
        if files.folder is not None:
            shutil.rmtree(files.folder, ignore_errors=True)
            return
        from medidiff.io import sidecar_path

        for path in (*files.images.values(), files.label, files.preview):
            for p in (path, sidecar_path(path)):
                if p.is_file() or p.is_symlink():
                    p.unlink()

    def check_modalities(self, modalities: Sequence[str]) -> None:
        """Raise when this layout cannot name these modalities."""


class CaseFolderLayout(Layout):
    """One folder per case: medidiff's own layout and the BraTS releases."""

    def __init__(self, name: str, folder_format: str, folder_re: str, file_format: str | None,
                 names: Mapping[str, str] | None, convention: LabelConvention | None) -> None:
        self.name, self._folder_format, self._folder_re = name, folder_format, re.compile(folder_re)
        self._file_format, self._names, self.label_convention = file_format, names, convention

    def case_id(self, index: int) -> str:
        return self._folder_format.format(index)

    def index_of(self, case_id: str) -> int | None:
        m = self._folder_re.fullmatch(case_id)
        return int(m["index"]) if m else None

    def _file(self, folder: Path, case_id: str, key: str) -> Path:
        key = (self._names or {}).get(key, key)
        name = self._file_format.format(case=case_id, key=key) if self._file_format else key
        return folder / f"{name}{FILE_ENDING}"

    def case_files(self, root: Path, case_id: str, modalities: Sequence[str]) -> CaseFiles:
        folder = Path(root) / case_id
        return CaseFiles(case_id=case_id, images={m: self._file(folder, case_id, m) for m in modalities},
                         label=self._file(folder, case_id, "seg"), provenance=folder / PROVENANCE,
                         preview=folder / "preview.png", folder=folder)

    def finished(self, root: Path) -> dict[str, Path]:
        root = Path(root)
        if not root.is_dir():
            return {}
        return {p.name: p / PROVENANCE for p in sorted(root.iterdir())
                if p.is_dir() and self._folder_re.fullmatch(p.name) and (p / PROVENANCE).is_file()}

    def started(self, root: Path) -> list[str]:
        root = Path(root)
        return sorted(p.name for p in root.iterdir() if p.is_dir() and self._folder_re.fullmatch(p.name)) \
            if root.is_dir() else []

    def check_modalities(self, modalities: Sequence[str]) -> None:
        if self._names is not None and list(modalities) != list(MODALITIES):
            raise MedidiffError(f"--layout {self.name}: BraTS files name the modalities {list(MODALITIES)}; this "
                                f"model generates {list(modalities)}: use --layout medidiff or nnunet")


class NnunetLayout(Layout):
    """nnU-Net v2 raw data set ``Dataset{id:03d}_{name}`` under ``out`` (the nnUNet_raw folder)."""

    name = "nnunet"
    label_convention: LabelConvention | None = "brats2023"  # nnU-Net needs consecutive labels 0..3
    sidecars = False
    needs_labels = True
    _ID_RE = re.compile(r"SYN_(?P<index>\d+)")

    def __init__(self, dataset_id: int, dataset_name: str) -> None:
        check_dataset_id(dataset_id)
        check_dataset_name(dataset_name)
        self.dataset_id, self.dataset_name = int(dataset_id), dataset_name

    @property
    def folder_name(self) -> str:
        return f"Dataset{self.dataset_id:03d}_{self.dataset_name}"

    def root(self, out: Path) -> Path:
        return Path(out) / self.folder_name

    def case_id(self, index: int) -> str:
        return _syn_id(index)

    def index_of(self, case_id: str) -> int | None:
        m = self._ID_RE.fullmatch(case_id)
        return int(m["index"]) if m else None

    def case_files(self, root: Path, case_id: str, modalities: Sequence[str], *,
                   split: Literal["Tr", "Ts"] = "Tr") -> CaseFiles:
        """``split`` "Ts": a test case (imagesTs/labelsTs; nnU-Net never trains on those)."""
        root = Path(root)
        return CaseFiles(case_id=case_id,
                         images={m: root / f"images{split}" / f"{case_id}_{k:04d}{FILE_ENDING}"
                                 for k, m in enumerate(modalities)},
                         label=root / f"labels{split}" / f"{case_id}{FILE_ENDING}",
                         provenance=root / "medidiff" / f"{case_id}.{PROVENANCE}",
                         preview=root / "medidiff" / f"{case_id}.png", folder=None)

    def finished(self, root: Path) -> dict[str, Path]:
        meta = Path(root) / "medidiff"
        if not meta.is_dir():
            return {}
        suffix = f".{PROVENANCE}"
        return {p.name[: -len(suffix)]: p for p in sorted(meta.glob(f"*{suffix}"))}

    def started(self, root: Path) -> list[str]:
        # only SYN_ ids: a file of any other name is nobody's case of ours, and is never removed
        ids = set()
        for sub, cut in (("imagesTr", len(f"_0000{FILE_ENDING}")), ("labelsTr", len(FILE_ENDING))):
            folder = Path(root) / sub
            if folder.is_dir():
                ids |= {p.name[:-cut] for p in folder.glob(f"*{FILE_ENDING}")}
        return sorted(i for i in ids if self._ID_RE.fullmatch(i))


def make_layout(name: str, *, dataset_id: int | None = None, dataset_name: str | None = None) -> Layout:
    """The layout called ``name``; nnunet needs ``dataset_id`` and ``dataset_name`` (only it takes them)."""
    if name not in LAYOUTS:
        raise MedidiffError(f"--layout {name!r}: unknown layout; use one of {', '.join(LAYOUTS)}")
    if name == "nnunet":
        if dataset_id is None or dataset_name is None:
            raise MedidiffError("--layout nnunet needs --dataset-id N (1..999) and --dataset-name NAME")
        return NnunetLayout(dataset_id, dataset_name)
    if dataset_id is not None or dataset_name is not None:
        raise MedidiffError(f"--dataset-id/--dataset-name name an nnU-Net data set: drop them, or use --layout nnunet "
                            f"(not {name})")
    return _CASE_FOLDER_LAYOUTS[name]


_CASE_FOLDER_LAYOUTS: dict[str, CaseFolderLayout] = {
    "medidiff": CaseFolderLayout("medidiff", "case_{:04d}", r"case_(?P<index>\d+)", None, None, None),
    "brats": CaseFolderLayout("brats", "BraTS-SYN-{:05d}-000", r"BraTS-SYN-(?P<index>\d+)-000", "{case}-{key}",
                              {m: m for m in MODALITIES}, "brats2023"),
    "brats2021": CaseFolderLayout("brats2021", "BraTS2021_SYN{:05d}", r"BraTS2021_SYN(?P<index>\d+)", "{case}_{key}",
                                  _BRATS2021_FILE, "brats2021"),
}


def check_dataset_id(dataset_id: Any) -> int:
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or not 1 <= dataset_id <= 999:
        raise MedidiffError(f"--dataset-id {dataset_id!r}: nnU-Net data set ids are integers 1..999 (Dataset%03d)")
    return dataset_id


def check_dataset_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or len(name) > 100:
        raise MedidiffError(f"--dataset-name {name!r}: use letters, digits, '_', '-' and '.' (starting with a letter "
                            "or digit, at most 100): it becomes a folder name, DatasetNNN_NAME")
    return name


def check_dataset_id_free(out: Path, layout: NnunetLayout) -> None:
    """nnU-Net finds a data set by its id alone: refuse an id another name already has in ``out``."""
    if not Path(out).is_dir():
        return
    prefix = f"Dataset{layout.dataset_id:03d}_"
    taken = sorted(p.name for p in Path(out).iterdir() if p.is_dir() and p.name.startswith(prefix)
                   and p.name != layout.folder_name)
    if taken:
        raise MedidiffError(f"--dataset-id {layout.dataset_id}: {out} already has {taken[0]} with that id (nnU-Net "
                            f"finds data sets by id): choose another --dataset-id")


def nnunet_dataset_json(modalities: Sequence[str], num_training: int, *, description: str,
                        medidiff: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """dataset.json of an nnU-Net v2 raw data set of BraTS-labelled cases (medidiff's label values)."""
    return {"channel_names": {str(k): m for k, m in enumerate(modalities)},
            "labels": dict(NNUNET_LABELS),
            "regions_class_order": list(NNUNET_REGIONS_CLASS_ORDER),
            "numTraining": int(num_training),
            "file_ending": FILE_ENDING,
            "name": "medidiff synthetic" if medidiff is None else str(medidiff.get("name", "medidiff")),
            "description": description,
            "medidiff": dict(medidiff or {})}


def write_nnunet_dataset_json(root: Path, modalities: Sequence[str], *, description: str,
                              medidiff: Mapping[str, Any] | None = None) -> Path:
    """(Re)write ``root/dataset.json`` counting the cases whose label files are in labelsTr."""
    from medidiff.files import write_text_atomic

    num = len(list((Path(root) / "labelsTr").glob(f"*{FILE_ENDING}")))
    data = nnunet_dataset_json(modalities, num, description=description, medidiff=medidiff)
    return write_text_atomic(Path(root) / "dataset.json", json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# Export: a generated folder (+ real training cases) -> nnU-Net v2 raw data set
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedSet:
    """The finished cases of a folder that ``generate`` wrote, in its layout."""

    root: Path
    layout: Layout
    cases: list[CaseFiles]
    provenances: list[dict[str, Any]]
    unfinished: int


def _layout_of(folder: Path) -> Layout:
    """The layout of a generated folder: a case-folder layout's root, or an nnU-Net Dataset folder."""
    found = [lay for lay in _CASE_FOLDER_LAYOUTS.values() if lay.finished(folder)]
    m = re.fullmatch(r"Dataset(\d{3})_(.+)", folder.name)
    if m and (folder / "medidiff").is_dir() and 1 <= int(m[1]) <= 999 and _NAME_RE.fullmatch(m[2]):
        nn = NnunetLayout(int(m[1]), m[2])
        if nn.finished(folder):
            found.append(nn)
    if not found:
        raise MedidiffError(f"{folder}: no finished generated case (a case_XXXX/, BraTS-SYN-xxxxx-000/ or "
                            "BraTS2021_SYNxxxxx/ folder, or an nnU-Net Dataset folder, with its provenance.json)")
    if len(found) > 1:
        raise MedidiffError(f"{folder}: holds cases of several layouts ({', '.join(lay.name for lay in found)}): "
                            "export one generated run at a time")
    return found[0]


def _case_modalities(layout: Layout, root: Path, case_id: str, modalities: Sequence[str] | None,
                     real: Sequence[str] | None) -> list[str]:
    """Channel order: --modalities, else the real manifest's, else BraTS's when the files are BraTS's."""
    if modalities:
        return list(modalities)
    if real:
        return list(real)
    if isinstance(layout, CaseFolderLayout) and layout._names is not None:
        return list(MODALITIES)
    if isinstance(layout, NnunetLayout) and (Path(root) / "dataset.json").is_file():
        channels = json.loads((Path(root) / "dataset.json").read_text()).get("channel_names") or {}
        return [channels[k] for k in sorted(channels, key=int)]
    if isinstance(layout, CaseFolderLayout):
        names = sorted(p.name[: -len(FILE_ENDING)] for p in (Path(root) / case_id).glob(f"*{FILE_ENDING}"))
        names = [n for n in names if n != "seg"]
        if sorted(names) == sorted(MODALITIES):
            return list(MODALITIES)
        raise MedidiffError(f"{root / case_id}: modalities {names} are not BraTS's {list(MODALITIES)}: give their "
                            "channel order with --modalities")
    raise MedidiffError(f"{root}: an nnU-Net folder names channels by number: give --modalities in channel order")


def finished_cases(folder: str | Path, modalities: Sequence[str], layout: Layout | None = None) -> list[CaseFiles]:
    """The finished cases of a generated folder (``layout`` detected when not given), in index order."""
    root = Path(folder)
    layout = layout or _layout_of(root)
    done = layout.finished(root)
    order = sorted(done, key=lambda cid: (layout.index_of(cid) is None, layout.index_of(cid) or 0, cid))
    return [layout.case_files(root, cid, modalities) for cid in order]


def find_generated(folder: str | Path, modalities: Sequence[str] | None = None,
                   real_modalities: Sequence[str] | None = None) -> GeneratedSet:
    """The finished cases of a generated folder (its layout detected), with their provenance; every
    case must have its volumes and a label map (what a segmentation data set needs)."""
    root = Path(folder)
    if not root.is_dir():
        raise MedidiffError(f"{root}: not a folder (give the --out of `medidiff generate`)")
    layout = _layout_of(root)
    first = next(iter(layout.finished(root)))
    mods = _case_modalities(layout, root, first, modalities, real_modalities)
    cases = finished_cases(root, mods, layout)
    provs = []
    for files in cases:
        try:
            provs.append(json.loads(files.provenance.read_text()))
        except (ValueError, UnicodeDecodeError) as exc:
            raise MedidiffError(f"{files.provenance}: unreadable provenance ({exc})") from None
        missing = [p for p in (*files.images.values(), files.label) if not p.is_file()]
        if missing:
            what = "label map" if missing[0] == files.label else "volume"
            raise MedidiffError(f"{missing[0]}: missing {what} of finished case {files.case_id}"
                                + ("; nnU-Net needs a label map per case (the model generates none?)"
                                   if what == "label map" else ""))
    return GeneratedSet(root=root, layout=layout, cases=cases, provenances=provs,
                        unfinished=len(set(layout.started(root)) - set(layout.finished(root))))


def _place(src: Path, dst: Path, link: bool) -> str:
    """Hard-link ``src`` at ``dst`` (copy across file systems or when ``link`` is off); returns how."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return "link"
        except OSError:  # EXDEV (another file system), EPERM (no hard links there)
            pass
    shutil.copy2(src, dst)
    os.chmod(dst, _file_mode())
    return "copy"


def _file_mode() -> int:
    from medidiff.files import file_mode

    return file_mode()


def _resave(src: Path, dst: Path, label_map: Mapping[int, int] | None = None) -> None:
    """Re-save a REAL NIfTI as .nii.gz with its own header (optionally mapping label values)."""
    import nibabel as nib
    import numpy as np

    from medidiff.files import atomic_path

    img = nib.load(str(src))
    if label_map:
        data = np.asarray(img.dataobj)
        out = data.copy()
        for k, v in label_map.items():
            out[data == k] = v
        img = nib.Nifti1Image(out, img.affine, header=img.header)
    else:
        img = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, header=img.header)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        nib.save(img, str(tmp))


def _synthetic_label(src: Path, dst: Path, prov: Mapping[str, Any], link: bool) -> str:
    """A synthetic label map in medidiff's values at ``dst``: 2021-convention files (ET = 4) are
    rewritten through write_nifti (still stamped synthetic, provenance kept and updated)."""
    if prov.get("label_convention") != "brats2021":
        return _place(src, dst, link)
    import nibabel as nib
    import numpy as np

    from medidiff.data.brats import LABEL_CONVENTIONS
    from medidiff.io import read_provenance, write_nifti

    img = nib.load(str(src))
    label = np.asarray(img.dataobj).copy()
    label[label == 4] = 3
    header_prov = {k: v for k, v in read_provenance(src).items() if k not in ("medidiff_version", "synthetic")}
    header_prov.update(label_convention="brats2023", labels={str(k): v for k, v in LABEL_CONVENTIONS["brats2023"].items()},
                       label_convention_from="export-dataset nnunet (ET 4 -> 3)")
    write_nifti(dst, label.astype(np.uint8), img.affine, provenance=header_prov, is_label=True, sidecar=False)
    return "rewrite"


def _real_cases(manifest: Path, root: str | None, folds: Sequence[int] | None, gen: GeneratedSet,
                modalities: Sequence[str], *, check_masks: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Labelled real cases of ``manifest``'s TRAINING folds, and a record of where they came from.

    The rules are generate's and evaluate's (:mod:`medidiff.data.mask_sources`): when the manifest
    is the generator's own training manifest (same sha256 as its provenance records), the default
    folds are those it trained on and its held-out fold is refused even when named, and synthetic
    cases whose mask came from that fold are refused (a segmenter trained on the set would see
    test labels); for another manifest the folds must be named."""
    from medidiff.data.config import DataConfig
    from medidiff.data.manifest import load_manifest, modalities_of, read_manifest
    from medidiff.data.mask_sources import SHA_DIGITS, TRAINING_DATA_KEY, check_synthetic_provenance, select_mask_cases
    from medidiff.files import file_sha256

    data = read_manifest(manifest)
    real_mods = modalities_of(data)
    if real_mods is not None and list(real_mods) != list(modalities):
        raise MedidiffError(f"--real {manifest}: modalities {real_mods}, the synthetic cases have {list(modalities)}")
    convention = (data.get("medidiff") or {}).get("label_convention")
    if convention != "brats2023":
        raise MedidiffError(f"--real {manifest}: label_convention {convention!r}; nnU-Net export mixes BraTS-labelled "
                            "cases only (a manifest from `medidiff manifest build brats`)")
    provs = gen.provenances
    trained_on = next((p.get(TRAINING_DATA_KEY) for p in provs if isinstance(p.get(TRAINING_DATA_KEY), Mapping)), None)
    sha = file_sha256(manifest)[:SHA_DIGITS]
    same = bool(trained_on) and str(trained_on.get("manifest_sha256") or "")[:SHA_DIGITS] == sha
    held_out = trained_on.get("fold") if same else None
    items = select_mask_cases(manifest, root, DataConfig(manifest="", fold=held_out), folds, trained_on=trained_on,
                              flags=("--real", "--real-folds"), refuse_held_out=True)
    case_folds = {it["case_id"]: it.get("fold") for it in load_manifest(manifest, root) if it.get("case_id")}
    # a case's provenance file is <folder>/provenance.json in case-folder layouts
    where = [c.folder or c.provenance.with_name(c.case_id) for c in gen.cases]
    n = len(provs) if check_masks else 0  # a real-only set holds none of the synthetic cases' masks
    check = check_synthetic_provenance(provs[:n], where[:n], manifest_sha256=sha, fold=held_out,
                                       case_folds=case_folds, tasks=None)
    folds_used = sorted({int(it["fold"]) for it in items})
    return items, {"manifest_sha256": sha, "folds": folds_used, "generator_held_out_fold": held_out,
                   "generator_trained_on_this_manifest": same, "provenance_check": check}


def export_nnunet(generated: str | Path, out: str | Path, dataset_id: int, dataset_name: str, *,
                  real: str | Path | None = None, root: str | None = None, real_folds: Sequence[int] | None = None,
                  modalities: Sequence[str] | None = None, link: bool = True, overwrite: bool = False,
                  with_test: bool = False, real_only: bool = False) -> dict[str, Any]:
    """Build ``out/Dataset{id:03d}_{name}`` from the finished cases of a generated folder and,
    with ``real``, the labelled cases of that manifest's training folds (module docstring).
    ``with_test`` also writes the generator's held-out fold of ``real`` as ``imagesTs``/``labelsTs``
    (nnU-Net never trains on them: they are what the segmenter is scored on). ``real_only`` leaves
    the synthetic cases out: the baseline with the same real training and test cases.

    The data set is assembled beside its final name and swapped in whole
    (:func:`medidiff.files.staged_dir`): a failed export leaves nothing, or the previous set.
    Returns the record written to ``Dataset.../medidiff/export.json``.
    """
    from medidiff.files import folder_lock, staged_dir, write_text_atomic

    layout = NnunetLayout(dataset_id, dataset_name)
    out = Path(out)
    target = layout.root(out)
    needs_real = [flag for flag, on in (("--real-folds", real_folds), ("--with-test", with_test),
                                        ("--real-only", real_only)) if on]
    if real is None and needs_real:
        raise MedidiffError(f"{needs_real[0]} needs --real MANIFEST")
    if target.exists() and Path(generated).resolve() == target.resolve():
        raise MedidiffError(f"{generated}: is the data set to write; export into another --dataset-id/--dataset-name")
    if target.exists() and not overwrite:
        raise MedidiffError(f"{target}: exists; pass --overwrite to replace it, or choose another --dataset-id/--dataset-name")
    check_dataset_id_free(out, layout)
    plan = _plan_export(generated, real, root, real_folds, modalities, with_test, real_only)
    gen = plan.gen
    with contextlib.ExitStack() as held:
        held.enter_context(folder_lock(out, "--out"))  # one export at a time into this nnUNet_raw
        if target.is_dir():  # and none while `generate --layout nnunet` writes the set it replaces
            held.enter_context(folder_lock(target, "--dataset-id/--dataset-name"))
        stage = held.enter_context(staged_dir(target))
        how = _write_export(stage, layout, plan, link)
        # no paths: a shared data set must not publish the exporter's folder layout
        record = {"dataset": layout.folder_name, "synthetic_cases": len(gen.cases),
                  "synthetic_from": {"folder": gen.root.name, "layout": gen.layout.name,
                                     "unfinished_left_out": gen.unfinished},
                  "real_cases": len(plan.train), "real_from": plan.real_from, "test_cases": len(plan.test),
                  "files": how}
        write_text_atomic(stage / "medidiff" / EXPORT_RECORD, json.dumps(record, indent=2))
        desc = (f"{len(gen.cases)} synthetic case(s) (ids SYN_*) from medidiff"
                + (f" and {len(plan.train)} real case(s) from training folds {plan.real_from['folds']}"
                   if plan.real_from else ""))
        write_nnunet_dataset_json(stage, plan.modalities, description=desc,
                                  medidiff={"name": layout.folder_name, "synthetic_ids": "SYN_*",
                                            "synthetic_cases": len(gen.cases), "real_cases": len(plan.train)})
    return record


@dataclass(frozen=True)
class _ExportPlan:
    gen: GeneratedSet  # the synthetic cases that go in (none for real_only)
    modalities: list[str]  # channel order
    train: list[dict[str, Any]]  # real training cases (manifest items, absolute paths)
    test: list[dict[str, Any]]  # real held-out cases for imagesTs
    real_from: dict[str, Any] | None
    label_map: dict[int, int]  # of the real label files (2021: {4: 3})


def _plan_export(generated: str | Path, real: str | Path | None, root: str | None, real_folds: Sequence[int] | None,
                 modalities: Sequence[str] | None, with_test: bool, real_only: bool) -> _ExportPlan:
    """Everything export_nnunet writes, checked before a file is written."""
    from medidiff.data.brats import BRATS2021_LABEL_MAP
    from medidiff.data.manifest import label_map_of, load_manifest, modalities_of, read_manifest

    gen = find_generated(generated, modalities, modalities_of(read_manifest(real)) if real is not None else None)
    mods = list(gen.cases[0].images)
    train: list[dict[str, Any]] = []
    test: list[dict[str, Any]] = []
    real_from: dict[str, Any] | None = None
    label_map: dict[int, int] = {}
    if real is not None:
        train, real_from = _real_cases(Path(real), root, real_folds, gen, mods, check_masks=not real_only)
        label_map = label_map_of(read_manifest(real), real)
        if label_map and label_map != BRATS2021_LABEL_MAP:
            raise MedidiffError(f"--real {real}: label_map {label_map}: only BraTS 2021's {{4: 3}} is known")
    if with_test:
        held_out = real_from["generator_held_out_fold"] if real_from else None
        if held_out is None:
            why = ("the generator trained on every fold" if real_from and real_from["generator_trained_on_this_manifest"]
                   else "--real is not the generator's training manifest")
            raise MedidiffError(f"--with-test: no held-out fold to test on ({why})")
        test = [it for it in load_manifest(real, root) if it.get("label") and it.get("fold") == held_out]
        if not test:
            raise MedidiffError(f"--with-test: {real} has no labelled case in the held-out fold {held_out}")
    if real_only:  # the generated folder still decides the folds (its provenance); its cases stay out
        gen = GeneratedSet(root=gen.root, layout=gen.layout, cases=[], provenances=[], unfinished=gen.unfinished)
    taken = {_exported_id(gen, c) for c in gen.cases}
    for it in (*train, *test):
        cid = str(it["case_id"])
        if cid in taken or not _NAME_RE.fullmatch(cid):
            raise MedidiffError(f"--real {real}: case id {cid!r} " + ("clashes with a synthetic id" if cid in taken else
                                "cannot name nnU-Net files (letters, digits, '_', '-', '.')"))
        taken.add(cid)
    return _ExportPlan(gen=gen, modalities=mods, train=train, test=test, real_from=real_from, label_map=label_map)


def _syn_id(index: int) -> str:
    return f"SYN_{index:05d}"


def _exported_id(gen: GeneratedSet, case: CaseFiles) -> str:
    """SYN_<the generated case's index>: case_0007 and BraTS-SYN-00007-000 both become SYN_00007 (seed + 7)."""
    return _syn_id(gen.layout.index_of(case.case_id) or 0)


def _write_export(stage: Path, layout: NnunetLayout, plan: _ExportPlan, link: bool) -> dict[str, int]:
    """Put the planned cases into ``stage``; returns how many files were linked, copied, rewritten."""
    from medidiff.files import write_text_atomic

    how: dict[str, int] = {}
    gen, mods = plan.gen, plan.modalities
    for files, prov in zip(gen.cases, gen.provenances):
        dst = layout.case_files(stage, _exported_id(gen, files), mods)
        for m in mods:
            k = _place(files.images[m], dst.images[m], link)
            how[k] = how.get(k, 0) + 1
        k = _synthetic_label(files.label, dst.label, prov, link)
        how[k] = how.get(k, 0) + 1
        exported = {**prov, "exported_from": {"folder": gen.root.name, "layout": gen.layout.name,
                                              "case": files.case_id}}
        write_text_atomic(dst.provenance, json.dumps(exported, indent=2))
        if files.preview.is_file():
            _place(files.preview, dst.preview, link)
    for split, items in (("Tr", plan.train), ("Ts", plan.test)):
        for it in items:
            dst = layout.case_files(stage, str(it["case_id"]), mods, split=split)
            for src, dst_file in [*zip(it["image"], dst.images.values()), (it["label"], dst.label)]:
                remap = plan.label_map if dst_file == dst.label else None
                if remap or not str(src).endswith(FILE_ENDING):
                    _resave(Path(src), dst_file, remap)
                    k = "rewrite"
                else:
                    k = _place(Path(src), dst_file, link)
                how[k] = how.get(k, 0) + 1
    return how
