"""The fused Triton synthesis (codecs/grid/fused.py) against the PyTorch reference render.

On the CPU the kernel runs under Triton's interpreter at tiny sizes (the interpreter is slow). Triton 3.8 reads
TRITON_INTERPRET when @jit decorates a function, not at import; fused.py decorates its kernel lazily, per mode, and
calls only Triton builtins (never a @jit helper decorated at import), so monkeypatching the variable is enough; one
subprocess test sets it before Triton's import too, the way Triton documents. Without a GPU the compiled kernel is
still built for sm_90 as a launch would build it; the `gpu` tests run it on CUDA.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rinr_data.codecs.grid import fused, model
from rinr_data.codecs.grid.model import GridShape, init_layers
from rinr_data.core.frames import to_uint8

triton = pytest.importorskip("triton")

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")

# (height, width, levels, hidden widths, frames): odd and even sizes, 1..6 levels, two hidden layers and one.
CASES = [
    (13, 17, 6, (16, 16), 3),
    (9, 8, 6, (16, 16), 2),
    (13, 17, 3, (8,), 2),
    (9, 8, 1, (8,), 3),
    (9, 8, 3, (16, 16), 2),
]


def _inputs(
    shape: GridShape, frames: int, height: int, width: int, seed: int = 0, device: str = "cpu"
) -> tuple[model.Layers, list[torch.Tensor]]:
    """Random synthesis weights (non-zero biases) and integer-valued latents, as a decoder sees them."""
    g = torch.Generator().manual_seed(seed)
    layers = [
        (w + 0.1 * torch.randn(w.shape, generator=g), b + 0.05 * torch.randn(b.shape, generator=g))
        for w, b in init_layers(shape, frames, g, torch.device("cpu"))
    ]
    # Quantised latents are small integers times a step; outputs land mostly in [0, 1] as decoded frames do.
    latents = [
        torch.randint(-6, 7, (frames, 1, h, w), generator=g).float() * 0.15 for h, w in shape.level_sizes(height, width)
    ]
    return [(w.to(device), b.to(device)) for w, b in layers], [t.to(device) for t in latents]


def _reference(layers: model.Layers, latents: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
    return model.synthesize(layers, model.upsample(latents, height, width))


def _assert_equal_within_a_level(out: torch.Tensor, ref: torch.Tensor) -> None:
    assert out.shape == ref.shape and out.dtype == ref.dtype == torch.float32
    # Sums run in another order (and contract to FMAs on a GPU): float rounding apart, far below a uint8 level.
    assert float((out - ref).abs().max()) < 1e-4
    assert int((to_uint8(out).int() - to_uint8(ref).int()).abs().max()) <= 1


@pytest.fixture
def interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Triton's interpreter for CPU tensors, the fused path left on."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("RINR_FUSED", raising=False)


@pytest.mark.parametrize("height,width,levels,hidden,frames", CASES)
def test_fused_matches_reference_on_cpu(interpreter, height, width, levels, hidden, frames):
    layers, latents = _inputs(GridShape(levels=levels, hidden=hidden), frames, height, width)
    _assert_equal_within_a_level(
        fused.render_fused(layers, latents, height, width), _reference(layers, latents, height, width)
    )


@pytest.mark.parametrize("rows,cols", [(7, 9), (2, 3), (1, 1), (13, 17), (4, 2)])
def test_bicubic_is_pytorchs(interpreter, rows, cols):
    # A one-level grid through an MLP that copies the level to channel 0: the kernel's upsampling alone.
    g = torch.Generator().manual_seed(rows * 31 + cols)
    latents = [torch.randn(2, 1, rows, cols, generator=g) * 10]
    weight = torch.zeros(2, 1, 3)
    weight[:, 0, 0] = 1
    out = fused.render_fused([(weight, torch.zeros(2, 1, 3))], latents, 13, 17)[:, 0]
    expected = F.interpolate(latents[0], size=(13, 17), mode="bicubic", align_corners=False)[:, 0]
    # The same definition, summed as PyTorch sums, but not its compiled rounding: a few float32 ulps apart.
    assert float((out - expected).abs().max()) <= 4e-6 * float(latents[0].abs().max())
    if (rows, cols) == (13, 17):
        assert torch.equal(out, latents[0][:, 0])  # a level of the frame's size is taken as it is


def test_frame_decodes_to_the_same_bits_alone_or_in_a_batch(interpreter):
    layers, latents = _inputs(GridShape(levels=6, hidden=(16, 16)), 3, 13, 17, seed=3)
    batched = fused.render_fused(layers, latents, 13, 17)
    for i in range(3):
        one = [(w[i : i + 1], b[i : i + 1]) for w, b in layers]
        alone = fused.render_fused(one, [t[i : i + 1] for t in latents], 13, 17)
        assert torch.equal(alone[0], batched[i])


def test_integer_latents_decode_as_their_float32_values(interpreter):
    layers, latents = _inputs(GridShape(levels=3, hidden=(8,)), 2, 9, 8, seed=5)
    as_int = [(t / 0.15).round().to(torch.int16) for t in latents]
    scaled = [t.float() for t in as_int]
    assert torch.equal(fused.render_fused(layers, as_int, 9, 8), fused.render_fused(layers, scaled, 9, 8))


def test_render_takes_the_fused_path_only_where_it_applies(interpreter, monkeypatch):
    calls = []
    original = fused.render_fused
    monkeypatch.setattr(fused, "render_fused", lambda *args: calls.append(1) or original(*args))
    layers, latents = _inputs(GridShape(levels=3, hidden=(8,)), 2, 9, 8, seed=7)
    reference = _reference(layers, latents, 9, 8)
    _assert_equal_within_a_level(model.render(layers, latents, 9, 8), reference)
    assert len(calls) == 1

    monkeypatch.setenv("RINR_FUSED", "0")
    assert torch.equal(model.render(layers, latents, 9, 8), reference)
    monkeypatch.delenv("RINR_FUSED")

    # A fit differentiating `render` gets the reference and its gradients.
    grad_latents = [t.clone().requires_grad_() for t in latents]
    model.render(layers, grad_latents, 9, 8).sum().backward()
    assert grad_latents[0].grad is not None
    # MLPs wider than the kernel takes (the format allows 255) and float64 callers too.
    wide, wide_latents = _inputs(GridShape(levels=2, hidden=(40,)), 1, 9, 8)
    model.render(wide, wide_latents, 9, 8)
    model.render([(w.double(), b.double()) for w, b in layers], [t.double() for t in latents], 9, 8)
    assert len(calls) == 1


def test_available_where_triton_can_run(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not fused.available("cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert fused.available("cpu")
    monkeypatch.setenv("RINR_FUSED", "0")
    assert not fused.enabled()
    monkeypatch.setenv("RINR_FUSED", "1")
    assert fused.enabled()


def test_interpreter_switched_on_before_triton_is_imported():
    # The way Triton documents: TRITON_INTERPRET=1 in a fresh process, before the first import.
    script = (
        "import torch\n"
        "from rinr_data.codecs.grid import fused, model\n"
        "from test_fused_synthesis import _inputs, _reference, _assert_equal_within_a_level\n"
        "assert fused.available('cpu')\n"
        "layers, latents = _inputs(model.GridShape(levels=3, hidden=(8,)), 2, 9, 8)\n"
        "_assert_equal_within_a_level(model.render(layers, latents, 9, 8), _reference(layers, latents, 9, 8))\n"
    )
    path = os.pathsep.join(p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    env.pop("RINR_FUSED", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_benchmark_runs_on_cpu(capsys):
    from rinr_bench.bench_synthesis import main

    assert main(["--quick", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| 2 | 64x48 | reference |" in out and "496 MACs per pixel" in out


def test_benchmark_roofline_of_an_h100(monkeypatch):
    from types import SimpleNamespace

    from rinr_bench import bench_synthesis

    # H100 SXM as the driver reports it: 132 SMs at 1.98 GHz, HBM3 at 2.619 GHz on a 5120-bit bus.
    props = SimpleNamespace(
        major=9, minor=0, multi_processor_count=132, clock_rate=1_980_000, memory_clock_rate=2_619_000,
        memory_bus_width=5120,
    )  # fmt: skip
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    roof = bench_synthesis.rooflines(torch.device("cuda"))
    assert roof["peak_gmac_s"] == pytest.approx(132 * 128 * 1.98)  # 33.5 TMAC/s: 67 fp32 TFLOPS
    assert roof["peak_gb_s"] == pytest.approx(3352, rel=1e-3)
    assert bench_synthesis.rooflines(torch.device("cpu")) is None


def _bind(layers: model.Layers, latents: list[torch.Tensor], height: int, width: int, target):
    """What Triton's launcher does before compiling, for the arguments render_fused launches with (no GPU needed)."""
    from triton.compiler.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    _, _, args, kwargs = fused.launch(layers, latents, height, width)
    kernel = fused._kernel(False)
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    return kernel, backend, kwargs, bound, specialization, options


@pytest.mark.parametrize("hidden", [(16, 16), (8,), (32, 3)])
def test_kernel_compiles_for_hopper(monkeypatch, hidden):
    # No GPU here: compile the kernel for sm_90 as a launch would (Triton's own binder and specialisation of the real
    # arguments, Triton IR to cubin with the bundled ptxas), so a shape error or an unsupported op shows before the
    # kernel meets a GPU.
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    layers, latents = _inputs(GridShape(levels=6, hidden=hidden), 2, 288, 384)
    target = GPUTarget("cuda", 90, 32)
    kernel, backend, kwargs, bound, specialization, options = _bind(layers, latents, 288, 384, target)
    options, signature, constants, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    compiled = triton.compile(ASTSource(kernel, signature, constants, attrs), target=target, options=options.__dict__)
    assert compiled.asm["cubin"] and compiled.metadata.num_warps == 4


def test_one_compiled_kernel_serves_every_frame_size(monkeypatch):
    # Triton compiles a kernel per specialisation (ints equal to 1 or divisible by 16): the sizes must not take part.
    from triton.backends.compiler import GPUTarget

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    keys = set()
    for height, width in [(288, 384), (13, 17), (1, 1), (640, 640), (33, 16)]:
        layers, latents = _inputs(GridShape(), 2, height, width)
        keys.add(str(_bind(layers, latents, height, width, GPUTarget("cuda", 90, 32))[4]))
    assert len(keys) == 1


@pytest.mark.gpu
@needs_cuda
def test_fused_matches_reference_on_cuda(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("RINR_FUSED", raising=False)
    layers, latents = _inputs(GridShape(), 4, 288, 384, seed=11, device="cuda")
    assert fused.available("cuda")
    out = fused.render_fused(layers, latents, 288, 384)
    _assert_equal_within_a_level(out, _reference(layers, latents, 288, 384))
    cpu = _reference([(w.cpu(), b.cpu()) for w, b in layers], [t.cpu() for t in latents], 288, 384)
    _assert_equal_within_a_level(out.cpu(), cpu)
    # `render`, as the decoder calls it, runs the kernel: the same bits.
    assert torch.equal(model.render(layers, latents, 288, 384), out)


@pytest.mark.gpu
@needs_cuda
def test_fused_is_batch_invariant_on_cuda(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    layers, latents = _inputs(GridShape(), 4, 288, 384, seed=12, device="cuda")
    batched = fused.render_fused(layers, latents, 288, 384)
    for i in (0, 3):
        alone = fused.render_fused(
            [(w[i : i + 1], b[i : i + 1]) for w, b in layers], [t[i : i + 1] for t in latents], 288, 384
        )
        assert torch.equal(alone[0], batched[i])
