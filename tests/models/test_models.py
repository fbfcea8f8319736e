import numpy as np
import pytest
import torch

from edgekit.errors import BadInputError
from edgekit.models import build
from edgekit.models.io import load_into, read_state_dict, save_weights


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_tinygaze_shape_size_and_unit_output():
    m = build("tinygaze").eval()
    assert _params(m) == 397_875  # c16 s2, c32 s2, c32, c64 s2, c64, fc128, fc3 (reference/gaze.md)
    out = m(torch.randn(2, 1, 40, 64))
    assert out.shape == (2, 3)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-6)
    assert not any(isinstance(mod, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)) for mod in m.modules())


def test_gazeresnet18_has_resnet18_widths_and_blocks():
    m = build("gazeresnet18").eval()
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert len(convs) == 20  # stem + 8 blocks x 2 + 3 downsample 1x1
    assert sorted({c.out_channels for c in convs}) == [64, 128, 256, 512]
    assert m.head.in_features == 512
    assert 11.1e6 < _params(m) < 11.2e6  # ResNet-18 (11.69 M with 1000 classes) with a 1-channel stem and 3 outputs
    assert m(torch.randn(1, 1, 64, 96)).shape == (1, 3)
    assert build("gazeresnet18", {"in_channels": 3, "input_size": [224, 224]})(torch.randn(1, 3, 224, 224)).shape == (1, 3)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_temporalgaze_window_to_five_future_frames(cell):
    m = build("temporalgaze", {"cell": cell}).eval()
    out = m(torch.randn(2, 10, 1, 40, 64))
    assert out.shape == (2, 5, 3)
    assert torch.allclose(out.norm(dim=-1), torch.ones(2, 5), atol=1e-6)


def test_safetensors_round_trip_and_fp16_storage(tmp_path):
    m = build("tinygaze", {"width": 4}).eval()
    path = save_weights(m, tmp_path / "w.safetensors", torch.float16)
    other = load_into(build("tinygaze", {"width": 4}), read_state_dict(path), str(path))
    for (k, a), b in zip(m.state_dict().items(), other.state_dict().values()):
        assert b.dtype == a.dtype
        if a.is_floating_point():
            assert torch.allclose(a, b, atol=2e-3, rtol=1e-3), k


def test_weights_that_do_not_fit_name_the_key(tmp_path):
    path = save_weights(build("tinygaze", {"width": 4}), tmp_path / "w.safetensors")
    with pytest.raises(BadInputError, match=r"w.safetensors: weights do not fit TinyGaze \(shape of features.0.0.weight"):
        load_into(build("tinygaze"), read_state_dict(path), str(path))


def test_truncated_safetensors_is_one_clear_error(tmp_path):
    path = save_weights(build("tinygaze", {"width": 4}), tmp_path / "w.safetensors")
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(BadInputError, match="w.safetensors: unreadable safetensors file"):
        read_state_dict(path)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_objects_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": _Evil()}, path)
    with pytest.raises(BadInputError, match=r"evil.pt: holds Python objects \(print\) besides tensors, and edgekit never unpickles those"):
        read_state_dict(path)


def test_plain_state_dict_file_loads(tmp_path):
    m = build("tinygaze", {"width": 4})
    torch.save(m.state_dict(), tmp_path / "sd.pt")
    state = read_state_dict(tmp_path / "sd.pt")
    assert set(state) == set(m.state_dict())
    assert np.allclose(state["head.weight"].numpy(), m.head.weight.detach().numpy())


def test_preprocessed_gray_images_are_plain_nchw_for_torch():
    """One channel: numpy's transpose of NHWC keeps strides torch reads as channels_last, after which a model's
    x.view(x.size(0), -1) behind a conv fails in the reference run; preprocessing hands over plain NCHW."""
    import numpy as np
    import torch

    from edgekit.models.card import Preprocessing

    x = torch.from_numpy(Preprocessing().apply(np.zeros((4, 36, 60), np.uint8), 1, (36, 60)))
    assert x.stride() == (36 * 60, 36 * 60, 60, 1)
    y = torch.nn.Conv2d(1, 4, 3)(x)
    assert y.view(y.size(0), -1).shape == (4, 4 * 34 * 58)


@pytest.mark.parametrize("shape,channels", [((6, 36, 60), 1), ((6, 36, 60, 3), 3), ((6, 36, 60), 3)])
def test_preprocessing_is_one_float32_multiply_and_add_per_pixel(shape, channels):
    """x = image * scale + offset in float32 (each step rounded as float32 rounds it), channels first, every value."""
    from edgekit.models.card import Preprocessing

    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    pre = Preprocessing(scale=0.0171, offset=-2.1179)
    x = pre.apply(images, channels, (36, 60))
    nhwc = images[..., None] if images.ndim == 3 else images
    nhwc = np.repeat(nhwc, channels, axis=-1) if nhwc.shape[-1] != channels else nhwc
    want = (nhwc.astype(np.float32) * np.float32(0.0171) + np.float32(-2.1179)).transpose(0, 3, 1, 2)
    assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape == (6, channels, 36, 60)
    assert x.tobytes() == np.ascontiguousarray(want).tobytes()
