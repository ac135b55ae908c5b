"""The series' ops against torchvision's over dtypes, problem sizes and ``torch.autocast`` (CPU).

For every op (``helpers.roi.roi_align`` / ``roi_pool``, ``helpers.fpn.multiscale_roi_align``,
``helpers.boxes.box_area`` / ``box_iou`` / ``nms`` / ``batched_nms``, ``helpers.box_coder``'s
encode / decode, the heads), every path it picks by problem size ("small" / "large"; "chunked" runs
the large problem with :data:`helpers.roi.CHUNK_ELEMENTS` made tiny), and every input dtype, with
and without ``torch.autocast("cpu", dtype=...)``, the same inputs go to ours and to torchvision's,
and the table says what each did: the output dtype, or ``err`` when it raised. A cell reads

    ``f16 3e-03``       both returned float16, largest absolute difference 3e-03 (``0`` = bit-identical)
    ``=idx``            (NMS) both kept the same indices in the same order
    ``err``             both refused
    ``tv err / ours f32`` they disagree: the cell is flagged with ``!``

    .venv/bin/python benchmarks/dtype_table.py            # the condensed table (markdown)
    .venv/bin/python benchmarks/dtype_table.py --full     # one line per case, with the error messages

Exit status 1 when a case disagrees (different error-or-not, different dtype, different NMS
indices, a value difference above the dtype's tolerance, or a NaN / inf in our output that
torchvision does not have). ``tests/test_dtypes.py`` runs the same cases.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torchvision
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor as TvPredictor
from torchvision.models.detection.faster_rcnn import TwoMLPHead as TvTwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead as TvRPNHead
from torchvision.models.detection._utils import BoxCoder as TvBoxCoder

import helpers.roi
from helpers.box_coder import BoxCoder
from helpers.box_head import FastRCNNPredictor, TwoMLPHead
from helpers.boxes import batched_nms, box_area, box_iou, nms
from helpers.fpn import multiscale_roi_align
from helpers.mask_head import MaskHead
from helpers.maskrcnn import RPNHead
from helpers.roi import roi_align, roi_pool

ops = torchvision.ops

DTYPES: dict[str, torch.dtype] = {
    "f32": torch.float32, "f64": torch.float64, "f16": torch.float16, "bf16": torch.bfloat16,
    "i32": torch.int32, "i64": torch.int64,
}
NAMES = {v: k for k, v in DTYPES.items()}
# the columns: (input dtype, autocast dtype or None)
SETTINGS: list[tuple[str, str | None]] = [
    ("f32", None), ("f64", None), ("f16", None), ("bf16", None), ("i32", None), ("i64", None),
    ("f32", "bf16"), ("f16", "bf16"), ("bf16", "bf16"), ("f32", "f16"),
]
# largest absolute difference allowed, by the dtype of the compared output (values are O(1) to O(100))
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 1.5e-1}


@dataclass
class Case:
    op: str
    path: str
    dtype: str
    autocast: str | None
    ours: Callable[[], Any]
    theirs: Callable[[], Any]
    relative: bool = False          # compare |a - b| / max(1, |b|) (box coordinates in the hundreds)
    reference: Callable[[], Any] | None = None   # values to check against instead of torchvision's own

    @property
    def column(self) -> str:
        return self.dtype if self.autocast is None else f"AC{self.autocast}:{self.dtype}"


@dataclass
class Outcome:
    dtype: str | None               # the output dtype's short name, None if it raised
    error: str = ""
    value: Any = None


@dataclass
class Result:
    case: Case
    tv: Outcome
    ours: Outcome
    diff: float | None              # largest difference (None: not comparable / indices)
    same_indices: bool | None
    ok: bool
    tv_diff: float | None = None    # with a reference: the largest difference between torchvision's and it

    def cell(self) -> str:
        if self.tv.dtype is None and self.ours.dtype is None:
            return "err"
        if self.tv.dtype is None or self.ours.dtype is None or self.tv.dtype != self.ours.dtype:
            return f"! tv {self.tv.dtype or 'err'} / ours {self.ours.dtype or 'err'}"
        flag = "" if self.ok else "! "
        if self.same_indices is not None:
            text = flag + ("=idx" if self.same_indices else "idx differ")
            return text if self.tv_diff is None else f"{text} ref (tv {'=' if self.tv_diff == 0 else '≠'})"
        if self.diff is None:
            return f"! {self.tv.dtype} shapes or dtypes differ"
        text = f"{flag}{self.tv.dtype} {_num(self.diff)}"
        return text if self.tv_diff is None else f"{text} (tv {_num(self.tv_diff)})"


def _num(x: float | None) -> str:
    return "" if x is None else "0" if x == 0 else f"{x:.0e}"


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for v in value for t in _tensors(v)]


def _short(dtype: torch.dtype) -> str:
    return NAMES.get(dtype, str(dtype).replace("torch.", ""))


def _run(fn: Callable[[], Any], autocast: str | None) -> Outcome:
    ctx = torch.autocast("cpu", dtype=DTYPES[autocast]) if autocast else contextlib.nullcontext()
    try:
        with ctx, torch.no_grad():
            value = fn()
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as e:
        return Outcome(None, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")
    dtypes = sorted({_short(t.dtype) for t in _tensors(value)})
    return Outcome("+".join(dtypes), value=value)


def compare(case: Case) -> Result:
    tv, ours = _run(case.theirs, case.autocast), _run(case.ours, case.autocast)
    if tv.dtype is None or ours.dtype is None:
        return Result(case, tv, ours, None, None, ok=(tv.dtype is None) == (ours.dtype is None))
    a, b = _tensors(ours.value), _tensors(tv.value)
    if case.op.startswith(("nms", "batched_nms")) and case.reference is not None:
        ref = _tensors(_run(case.reference, case.autocast).value)
        right = len(a) == len(ref) and all(torch.equal(x, y) for x, y in zip(a, ref))
        same = len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))
        return Result(case, tv, ours, None, right, ok=right, tv_diff=0.0 if same else 1.0)
    if len(a) != len(b) or any(x.shape != y.shape or x.dtype != y.dtype for x, y in zip(a, b)):
        return Result(case, tv, ours, None, None, ok=False)
    if case.op.startswith(("nms", "batched_nms")):
        same = all(torch.equal(x, y) for x, y in zip(a, b))
        return Result(case, tv, ours, None, same, ok=same)
    tv_diff = None
    if case.reference is not None:              # torchvision in float64 on the same inputs, cast like ours
        ref = [t.to(x.dtype) for t, x in zip(_tensors(_run(case.reference, case.autocast).value), a)]
        tv_diff = max((float((y.double() - r.double()).abs().max()) for y, r in zip(b, ref) if r.numel()), default=0.0)
        b = ref
    diff, ok = 0.0, True
    for x, y in zip(a, b):
        if x.numel() == 0:
            continue
        x64, y64 = x.double(), y.double()
        if x64.is_floating_point() and not torch.isfinite(x64).all() and torch.isfinite(y64).all():
            ok = False                                        # a NaN / inf torchvision does not have
        finite = torch.isfinite(x64) & torch.isfinite(y64)
        d = (x64 - y64).abs()
        if case.relative:
            d = d / y64.abs().clamp(min=1)
        d = float(d[finite].max()) if finite.any() else 0.0
        diff = max(diff, d)
        if not torch.equal(torch.isfinite(x64), torch.isfinite(y64)) or d > TOLERANCE.get(x.dtype, 0.0):
            ok = False
    return Result(case, tv, ours, diff, None, ok, tv_diff)


@contextlib.contextmanager
def tiny_chunks() -> Iterator[None]:
    """helpers.roi's chunked path on a modest problem: CHUNK_ELEMENTS made tiny for the duration."""
    saved = helpers.roi.CHUNK_ELEMENTS
    helpers.roi.CHUNK_ELEMENTS = 1 << 12
    try:
        yield
    finally:
        helpers.roi.CHUNK_ELEMENTS = saved


def _chunked(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with tiny_chunks():
            return fn()
    return run


def random_boxes(n: int, g: torch.Generator, extent: float, max_side: float) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * (extent - max_side)
    wh = 1 + torch.rand(n, 2, generator=g) * (max_side - 1)
    return torch.cat([xy, xy + wh], dim=1)


def _heads(g: torch.Generator) -> dict[str, tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]]:
    """(ours, torchvision's, input) with the same weights."""
    torch.manual_seed(0)
    tv_rpn = TvRPNHead(8, 3)
    rpn = RPNHead(8, 3)
    rpn.load_state_dict(tv_rpn.state_dict())
    tv_mlp = TvTwoMLPHead(8 * 7 * 7, 32)
    mlp = TwoMLPHead.from_torchvision(tv_mlp)
    tv_pred = TvPredictor(32, 5)
    pred = FastRCNNPredictor.from_torchvision(tv_pred)
    tv_mask = torch.nn.Sequential(MaskRCNNHeads(8, (8, 8), 1), MaskRCNNPredictor(8, 8, 5))
    mask = MaskHead.from_torchvision(tv_mask[0], tv_mask[1])
    return {
        "RPNHead": (rpn, tv_rpn, torch.randn(2, 8, 12, 12, generator=g)),
        "TwoMLPHead": (mlp, tv_mlp, torch.randn(6, 8, 7, 7, generator=g)),
        "FastRCNNPredictor": (pred, tv_pred, torch.randn(6, 32, generator=g)),
        "MaskHead": (mask, tv_mask, torch.randn(6, 8, 14, 14, generator=g)),
    }


def cases() -> list[Case]:
    """Every (op, path, dtype, autocast) case, inputs built once (seeded)."""
    g = torch.Generator().manual_seed(0)
    out: list[Case] = []
    float_names = ("f32", "f64", "f16", "bf16")

    # RoIAlign / RoIPool: small (embedding_bag), large (CSR sparse matmul), large in tiny chunks
    problems = {}
    for path, (n, c, size, k) in {"small": (2, 4, 16, 6), "large": (2, 64, 40, 300)}.items():
        x = torch.randn(n, c, size, size, generator=g)
        b = random_boxes(k, g, extent=size * 4, max_side=size * 2)
        rois = torch.cat([torch.randint(0, n, (k, 1), generator=g).float(), b], dim=1)
        problems[path] = (x, rois)
    if 300 * 7 * 7 * 16 * 64 < helpers.roi.CSR_MIN_WORK:                          # pragma: no cover
        raise AssertionError("the 'large' RoIAlign problem no longer reaches the CSR path")
    for setting in SETTINGS:
        name, ac = setting
        if name.startswith("i"):
            continue
        dt = DTYPES[name]
        for path in ("small", "large", "chunked"):
            x, rois = problems["large" if path == "chunked" else path]
            x, rois = x.to(dt), rois.to(dt)
            wrap = _chunked if path == "chunked" else (lambda f: f)
            half = dt in (torch.float16, torch.bfloat16)
            x64, r64 = x.double(), rois.double()
            out.append(Case("roi_align", path, name, ac,
                            wrap(lambda x=x, r=rois: roi_align(x, r, 7, 0.25, 2)),
                            lambda x=x, r=rois: ops.roi_align(x, r, 7, 0.25, 2),
                            reference=(lambda x=x64, r=r64: ops.roi_align(x, r, 7, 0.25, 2)) if half else None))
            out.append(Case("roi_align (adaptive, aligned)", path, name, ac,
                            wrap(lambda x=x, r=rois: roi_align(x, r, (5, 3), 0.25, -1, True)),
                            lambda x=x, r=rois: ops.roi_align(x, r, (5, 3), 0.25, -1, True),
                            reference=(lambda x=x64, r=r64: ops.roi_align(x, r, (5, 3), 0.25, -1, True))
                            if half else None))
            out.append(Case("roi_pool", path, name, ac,
                            wrap(lambda x=x, r=rois: roi_pool(x, r, 7, 0.25)),
                            lambda x=x, r=rois: ops.roi_pool(x, r, 7, 0.25)))

    # MultiScaleRoIAlign over a 4-level pyramid (image 512 x 512, strides 4 .. 32); boxes up to 480 px,
    # so float16 areas overflow (> 65504) unless upcast, and a box's level depends on it
    feats = {str(i): torch.randn(2, 8, 128 >> i, 128 >> i, generator=g) for i in range(4)}
    boxes = [random_boxes(20, g, 512, 480), random_boxes(15, g, 512, 480)]
    names = ("0", "1", "2", "3")
    pooler = ops.MultiScaleRoIAlign(list(names), 7, 2)
    for name, ac in SETTINGS:
        if name.startswith("i"):
            continue
        dt = DTYPES[name]
        f = {k: v.to(dt) for k, v in feats.items()}
        bs = [b.to(dt) for b in boxes]
        f64, bs64 = {k: v.double() for k, v in f.items()}, [b.double() for b in bs]
        out.append(Case("multiscale_roi_align", "4 levels", name, ac,
                        lambda f=f, bs=bs: multiscale_roi_align(f, bs, [(512, 512)] * 2, 7, 2, names),
                        lambda f=f, bs=bs: pooler(f, bs, [(512, 512)] * 2),
                        reference=(lambda f=f64, bs=bs64: pooler(f, bs, [(512, 512)] * 2))
                        if dt in (torch.float16, torch.bfloat16) else None))

    # box ops: coordinates up to 1000 px (areas up to 1e6: float16 overflows above 65504)
    b1, b2 = random_boxes(40, g, 1000, 400).round(), random_boxes(30, g, 1000, 400).round()
    for name, ac in SETTINGS:
        dt = DTYPES[name]
        x1, x2 = b1.to(dt), b2.to(dt)
        out.append(Case("box_area", "-", name, ac, lambda a=x1: box_area(a), lambda a=x1: ops.box_area(a), True))
        out.append(Case("box_iou", "-", name, ac, lambda a=x1, b=x2: box_iou(a, b), lambda a=x1, b=x2: ops.box_iou(a, b),
                        reference=(lambda a=x1.double(), b=x2.double(): ops.box_iou(a, b))
                        if dt in (torch.float16, torch.bfloat16) else None))

    # NMS: small (one block) and large (several NMS_BLOCK blocks); batched: coordinate trick / per class
    nms_problems = {}
    for path, n in {"small": 60, "large": 1500}.items():
        b = random_boxes(n, g, 1000, 150)
        s = torch.randperm(n, generator=g).float() / n                   # distinct in every dtype
        idx = torch.randint(0, 40, (n,), generator=g)
        nms_problems[path] = (b, s, idx)
    for name, ac in SETTINGS:
        dt = DTYPES[name]
        for path in ("small", "large"):
            b, s, idx = nms_problems[path]
            b, s = b.to(dt), (s if name.startswith("i") else s.to(dt))
            out.append(Case("nms", path, name, ac, lambda b=b, s=s: nms(b, s, 0.5),
                            lambda b=b, s=s: ops.nms(b, s, 0.5)))
            out.append(Case("batched_nms", path, name, ac, lambda b=b, s=s, i=idx: batched_nms(b, s, i, 0.5),
                            lambda b=b, s=s, i=idx: ops.batched_nms(b, s, i, 0.5)))

    # the coordinate trick with 80 classes: torchvision shifts float16 boxes by up to 79 * (max + 1) in
    # float16 (spacing 32 above 32768, inf above 65504); the reference is per-class NMS in float64
    b80 = random_boxes(250, g, 300, 150) + 700                   # crowded into [700, 1000]^2: many overlaps
    s80 = (torch.randperm(250, generator=g).float() + 1) / 256   # distinct in bfloat16 too
    i80 = torch.randint(0, 80, (250,), generator=g)
    for name, ac in SETTINGS:
        if name.startswith("i"):
            continue
        dt = DTYPES[name]
        b, sc = b80.to(dt), s80.to(dt)
        out.append(Case("batched_nms", "80 classes", name, ac,
                        lambda b=b, s=sc: batched_nms(b, s, i80, 0.5),
                        lambda b=b, s=sc: ops.batched_nms(b, s, i80, 0.5),
                        reference=lambda b=b.double(), s=sc.double(): _per_class_nms(b, s, i80, 0.5)))

    # box coder: RPN weights (1, 1, 1, 1) and box-head weights (10, 10, 5, 5)
    gt, anchors = random_boxes(50, g, 800, 300), random_boxes(50, g, 800, 300)
    codes = torch.randn(50, 8, generator=g)
    for weights in ((1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)):
        ours_coder, tv_coder = BoxCoder(weights), TvBoxCoder(weights)
        path = "w=" + ",".join(f"{w:g}" for w in weights)
        for name, ac in SETTINGS:
            if name.startswith("i"):
                continue
            dt = DTYPES[name]
            r, p, c = gt.to(dt), anchors.to(dt), codes.to(dt)
            out.append(Case("BoxCoder.encode", path, name, ac,
                            lambda r=r, p=p, o=ours_coder: o.encode([r], [p]),
                            lambda r=r, p=p, t=tv_coder: t.encode([r], [p])))
            out.append(Case("BoxCoder.decode", path, name, ac,
                            lambda c=c, p=p, o=ours_coder: o.decode(c, [p]),
                            lambda c=c, p=p, t=tv_coder: t.decode(c, [p]), True))

    # heads, same weights: module and input in the dtype; under autocast the module stays float32
    for head, (mine, theirs, x) in _heads(g).items():
        for name, ac in SETTINGS:
            if name.startswith("i"):
                continue
            dt = DTYPES[name]
            m, t = (mine, theirs) if ac else (_copy_to(mine, dt), _copy_to(theirs, dt))
            xi = x.to(dt)
            arg = [xi] if head == "RPNHead" else xi
            out.append(Case(head, "-", name, ac, lambda m=m, a=arg: m(a), lambda t=t, a=arg: t(a)))
    return out


def _per_class_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, threshold: float) -> torch.Tensor:
    """torchvision's NMS class by class (no coordinate trick), kept indices by decreasing score."""
    keep = torch.cat([torch.where(idxs == c)[0][ops.nms(boxes[idxs == c], scores[idxs == c], threshold)]
                      for c in torch.unique(idxs)])
    return keep[scores[keep].sort(descending=True, stable=True).indices]


def _copy_to(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    import copy
    return copy.deepcopy(module).to(dtype)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="one line per case, with the error messages")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = [compare(c) for c in cases()]
    columns = [n if a is None else f"AC{a}:{n}" for n, a in SETTINGS]
    if args.full:
        print("| op | path | dtype | torchvision | ours | max diff | ok |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            d = "" if r.diff is None else f"{r.diff:.1e}"
            if r.same_indices is not None:
                d = "same indices" if r.same_indices else "indices differ"
            print(f"| {r.case.op} | {r.case.path} | {r.case.column} | {r.tv.dtype or r.tv.error} | "
                  f"{r.ours.dtype or r.ours.error} | {d} | {'yes' if r.ok else 'NO'} |")
    else:
        rows: dict[tuple[str, str], dict[str, str]] = {}
        for r in results:
            rows.setdefault((r.case.op, r.case.path), {})[r.case.column] = r.cell()
        print("| op | path | " + " | ".join(columns) + " |")
        print("|---|---|" + "---|" * len(columns))
        for (op, path), cells in rows.items():
            print(f"| {op} | {path} | " + " | ".join(cells.get(c, "-") for c in columns) + " |")
    bad = [r for r in results if not r.ok]
    print(f"\n{len(results)} cases, {len(bad)} disagree"
          + ("" if not bad else ": " + "; ".join(f"{r.case.op}/{r.case.path}/{r.case.column}" for r in bad[:12])))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
