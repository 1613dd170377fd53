"""Reading profiles in both Dynamo layouts, and one clear message per kind of bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from scaler.core.profile import Profile
from scaler.errors import ProfileError
from scaler.profile_io import load_profile, write_profile, write_profile_json

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "profiles"
SYNTHETIC = FIXTURES / "h200-llama3.1-8b-fp8-tp1"
MEASURED = FIXTURES / "h200-llama3.1-8b-bf16-measured"
ARRAYS = (
    "prefill_isl",
    "prefill_ttft_ms",
    "prefill_thpt_per_gpu",
    "decode_kv_usage",
    "decode_context",
    "decode_itl_ms",
    "decode_thpt_per_gpu",
)


def _assert_same(a: Profile, b: Profile) -> None:
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.max_kv_tokens == b.max_kv_tokens
    assert a.fingerprint == b.fingerprint


def _json_only(tmp_path: Path, src: Path = SYNTHETIC) -> Path:
    d = tmp_path / "profile"
    d.mkdir()
    for name in ("prefill_raw_data.json", "decode_raw_data.json"):
        shutil.copyfile(src / name, d / name)
    return d


def _npz_only(tmp_path: Path, src: Path = SYNTHETIC) -> Path:
    d = tmp_path / "profile_npz"
    for sub in ("selected_prefill_interpolation", "selected_decode_interpolation"):
        (d / sub).mkdir(parents=True)
        shutil.copyfile(src / sub / "raw_data.npz", d / sub / "raw_data.npz")
    return d


def _edit(directory: Path, part: str, **changes: object) -> None:
    path = directory / f"{part}_raw_data.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def _errors(directory: Path, **kwargs: object) -> list[str]:
    with pytest.raises(ProfileError) as info:
        load_profile(directory, **kwargs)
    return [str(e) for e in info.value.errors]


# -- good input -----------------------------------------------------------------------------


def test_both_layouts_load_to_equal_arrays(tmp_path: Path) -> None:
    from_json = load_profile(_json_only(tmp_path))
    from_npz = load_profile(_npz_only(tmp_path))
    _assert_same(from_json, from_npz)
    assert from_json.max_kv_tokens == 932000
    assert len(from_json.prefill_isl) == 17 and len(from_json.decode_kv_usage) == 54


def test_npz_preferred_when_both_present(tmp_path: Path) -> None:
    d = tmp_path / "both"
    shutil.copytree(SYNTHETIC, d)
    (d / "prefill_raw_data.json").write_text("not json")  # would fail if it were read
    (d / "decode_raw_data.json").write_text("not json")
    _assert_same(load_profile(d), load_profile(SYNTHETIC))


def test_measured_profile_loads(tmp_path: Path) -> None:
    p = load_profile(MEASURED)
    _assert_same(p, load_profile(_json_only(tmp_path, MEASURED)))
    assert p.max_kv_tokens == 918425
    assert p.source == str(MEASURED)


def test_write_profile_json_round_trips(tmp_path: Path) -> None:
    original = load_profile(SYNTHETIC)
    out = tmp_path / "out" / "nested"
    write_profile_json(original, out)
    assert sorted(f.name for f in out.iterdir()) == ["decode_raw_data.json", "prefill_raw_data.json"]
    _assert_same(load_profile(out), original)
    assert isinstance(json.loads((out / "decode_raw_data.json").read_text())["max_kv_tokens"], float)


def test_write_profile_writes_both_forms_that_read_back_equal(tmp_path: Path) -> None:
    original = load_profile(MEASURED)
    out = tmp_path / "both"
    write_profile(original, out)
    names = sorted(str(f.relative_to(out)) for f in out.rglob("*") if f.is_file())
    assert names == ["decode_raw_data.json", "prefill_raw_data.json",
                     "selected_decode_interpolation/raw_data.npz", "selected_prefill_interpolation/raw_data.npz"]
    from_npz = load_profile(out)  # npz is preferred when present
    _assert_same(from_npz, original)
    assert from_npz.fingerprint == original.fingerprint
    (tmp_path / "j").mkdir()
    _assert_same(load_profile(_json_only(tmp_path / "j", out)), original)
    with np.load(out / "selected_decode_interpolation" / "raw_data.npz") as z:
        assert z["max_kv_tokens"].shape == (1,) and z["max_kv_tokens"][0] == 918425


# -- bad input: one test per kind -------------------------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    (msg,) = _errors(tmp_path / "nope")
    assert "nope" in msg and "does not exist" in msg


def test_path_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    (msg,) = _errors(f)
    assert "not a directory" in msg


def test_missing_files(tmp_path: Path) -> None:
    msgs = _errors(tmp_path)
    assert len(msgs) == 2
    assert "prefill_raw_data.json" in msgs[0] and "selected_prefill_interpolation/raw_data.npz" in msgs[0]
    assert "decode_raw_data.json" in msgs[1]


def test_one_missing_file_still_checks_the_other(tmp_path: Path) -> None:
    d = _json_only(tmp_path)
    (d / "prefill_raw_data.json").unlink()
    _edit(d, "decode", x_kv_usage=[2.0] * 54)
    msgs = _errors(d)
    assert any("no prefill data" in m for m in msgs)
    assert any("decode_raw_data.json: decode.x_kv_usage: values must lie in [0, 1]" in m for m in msgs)
    assert not any("prefill.prefill_isl" in m for m in msgs)


def test_unreadable_json(tmp_path: Path) -> None:
    d = _json_only(tmp_path)
    (d / "decode_raw_data.json").write_text("{not json")
    (msg,) = _errors(d)
    assert "decode_raw_data.json" in msg and "invalid JSON" in msg


def test_json_not_an_object(tmp_path: Path) -> None:
    d = _json_only(tmp_path)
    (d / "prefill_raw_data.json").write_text("[1, 2, 3]")
    (msg,) = _errors(d)
    assert "prefill_raw_data.json" in msg and "JSON object" in msg


def test_unreadable_npz(tmp_path: Path) -> None:
    d = _npz_only(tmp_path)
    (d / "selected_decode_interpolation" / "raw_data.npz").write_bytes(b"garbage, not a zip")
    (msg,) = _errors(d)
    assert "selected_decode_interpolation/raw_data.npz" in msg and "cannot read npz" in msg


def test_pickled_npz_is_refused(tmp_path: Path) -> None:
    d = _npz_only(tmp_path)
    path = d / "selected_prefill_interpolation" / "raw_data.npz"
    np.savez(path, prefill_isl=np.array([{"a": 1}], dtype=object), prefill_ttft=[1.0], prefill_thpt_per_gpu=[1.0])
    (msg,) = _errors(d)
    assert "cannot read npz" in msg


def test_wrong_types(tmp_path: Path) -> None:
    d = _json_only(tmp_path)
    _edit(d, "prefill", prefill_ttft="fast")
    _edit(d, "decode", max_kv_tokens="lots")
    msgs = _errors(d)
    assert any("prefill_raw_data.json: prefill.prefill_ttft: must be an array of numbers" in m for m in msgs)
    assert any("decode_raw_data.json: decode.max_kv_tokens: must be a number" in m for m in msgs)


def test_missing_key(tmp_path: Path) -> None:
    d = _json_only(tmp_path)
    _edit(d, "decode", z_itl=...)
    (msg,) = _errors(d)
    assert "decode_raw_data.json: decode.z_itl: is missing" in msg


def test_unequal_lengths(tmp_path: Path) -> None:
    d = _json_only(tmp_path)
    data = json.loads((d / "prefill_raw_data.json").read_text())
    _edit(d, "prefill", prefill_ttft=data["prefill_ttft"][:-1])
    (msg,) = _errors(d)
    assert "prefill_raw_data.json: prefill: arrays have unequal lengths" in msg
    assert "prefill_ttft=16" in msg and "prefill_isl=17" in msg


def test_non_finite(tmp_path: Path) -> None:
    d = _json_only(tmp_path)
    itl = json.loads((d / "decode_raw_data.json").read_text())["z_itl"]
    itl[3] = float("nan")
    _edit(d, "decode", z_itl=itl)
    (msg,) = _errors(d)
    assert "decode_raw_data.json: decode.z_itl: has non-finite values" in msg


def test_non_positive(tmp_path: Path) -> None:
    d = _json_only(tmp_path)
    thpt = json.loads((d / "prefill_raw_data.json").read_text())["prefill_thpt_per_gpu"]
    thpt[0] = 0
    _edit(d, "prefill", prefill_thpt_per_gpu=thpt)
    (msg,) = _errors(d)
    assert "prefill_raw_data.json: prefill.prefill_thpt_per_gpu: values must be positive" in msg


def test_too_few_prefill_points(tmp_path: Path) -> None:
    d = _json_only(tmp_path)
    _edit(d, "prefill", prefill_isl=[100, 200, 300], prefill_ttft=[1, 2, 3], prefill_thpt_per_gpu=[5, 6, 7])
    (msg,) = _errors(d)
    assert "prefill_raw_data.json: prefill.prefill_isl: needs at least 4 points, has 3" in msg


def test_kv_usage_outside_unit_interval(tmp_path: Path) -> None:
    d = _json_only(tmp_path)
    kv = json.loads((d / "decode_raw_data.json").read_text())["x_kv_usage"]
    kv[-1] = 1.5
    _edit(d, "decode", x_kv_usage=kv)
    (msg,) = _errors(d)
    assert msg.endswith("decode_raw_data.json: decode.x_kv_usage: values must lie in [0, 1]")


@pytest.mark.parametrize("value", [0, -5])
def test_max_kv_tokens_not_positive(tmp_path: Path, value: int) -> None:
    d = _json_only(tmp_path)
    _edit(d, "decode", max_kv_tokens=value)
    (msg,) = _errors(d)
    assert "decode_raw_data.json: decode.max_kv_tokens: must be a positive number" in msg


def test_npz_errors_name_the_npz_file(tmp_path: Path) -> None:
    d = _npz_only(tmp_path)
    path = d / "selected_decode_interpolation" / "raw_data.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["max_kv_tokens"] = np.array([0])
    np.savez(path, **arrays)
    (msg,) = _errors(d)
    assert "selected_decode_interpolation/raw_data.npz: decode.max_kv_tokens: must be a positive number" in msg


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    d = _json_only(tmp_path)
    _edit(d, "prefill", prefill_ttft=...)
    _edit(d, "decode", max_kv_tokens=-1, z_itl="x")
    msgs = _errors(d)
    assert len(msgs) == 3


def test_errors_located_in_plan_file_when_given(tmp_path: Path) -> None:
    d = _json_only(tmp_path)
    _edit(d, "decode", x_kv_usage=[2.0] * 54)
    with pytest.raises(ProfileError) as info:
        load_profile(d, plan_file="plans/llama.yaml", field_path="spec.profile")
    (err,) = info.value.errors
    assert err.file == "plans/llama.yaml" and err.path == "spec.profile"
    assert err.message == f"{d / 'decode_raw_data.json'}: decode.x_kv_usage: values must lie in [0, 1]"
    assert str(err).startswith("plans/llama.yaml: spec.profile: ")


def test_missing_directory_located_in_plan_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile(tmp_path / "gone", plan_file="p.yaml")
    (err,) = info.value.errors
    assert err.file == "p.yaml" and err.path == "spec.profile"
    assert "gone" in err.message and "does not exist" in err.message


# -- bounds (hostile files: red-team L11, L12, L13, L14) ------------------------------------


def _npz_with_member(directory: Path, name: str, header_shape: tuple, dtype: str = "<f8", data: bytes = b"") -> Path:
    """The decode npz with member `name` replaced by a raw .npy whose header says what we like."""
    import zipfile

    path = directory / "selected_decode_interpolation" / "raw_data.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != name}
    np.savez(path, **arrays)
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (dtype, header_shape)
    hdr += " " * (63 - (len(hdr) + 10) % 64) + "\n"
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z, z.open(f"{name}.npy", "w", force_zip64=True) as f:
        f.write(b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr.encode())
        f.write(data)
    return path


def test_npz_header_claiming_1e11_values(tmp_path: Path) -> None:
    d = _npz_only(tmp_path)
    path = _npz_with_member(d, "z_itl", (10**11,), data=b"\0" * 40)  # 745 GiB allocation before
    (msg,) = _errors(d)
    assert msg == f"{path}: decode.z_itl: cannot read npz member: declares 100000000000 values; at most 8192 are accepted"


def test_npz_decompression_bomb_is_not_inflated(tmp_path: Path) -> None:
    import tracemalloc

    d = _npz_only(tmp_path)
    n = 4_000_000  # 32 MB of zeros deflate to ~31 KB
    path = _npz_with_member(d, "z_itl", (n,), data=bytes(8 * n))
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        (msg,) = _errors(d)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert msg.endswith(f"decode.z_itl: cannot read npz member: declares {n} values; at most 8192 are accepted")
    assert peak < 2_000_000  # the 32 MB array is never allocated


def test_npz_truncated_member(tmp_path: Path) -> None:
    d = _npz_only(tmp_path)
    _npz_with_member(d, "z_itl", (54,), data=b"\0" * 100)
    (msg,) = _errors(d)
    assert msg.endswith("decode.z_itl: cannot read npz member: is truncated")


@pytest.mark.parametrize("dtype, name", [("<c16", "complex128"), ("|b1", "bool"), ("<U3", "str96")])
def test_npz_non_real_dtypes_are_refused(tmp_path: Path, dtype: str, name: str) -> None:
    d = _npz_only(tmp_path)
    _npz_with_member(d, "z_itl", (54,), dtype=dtype, data=b"\0" * 54 * 16)  # complex: a warning before
    (msg,) = _errors(d)
    assert msg.endswith(f"decode.z_itl: cannot read npz member: dtype {name} is not a real number type")


def test_bare_npy_named_npz(tmp_path: Path) -> None:
    d = _npz_only(tmp_path)
    path = d / "selected_decode_interpolation" / "raw_data.npz"
    with open(path, "wb") as f:
        np.save(f, np.arange(5.0))  # TypeError traceback before
    (msg,) = _errors(d)
    assert msg == f"{path}: decode: cannot read npz file: File is not a zip file"


def test_npz_file_size_bound(tmp_path: Path) -> None:
    from scaler.profile_io import MAX_PROFILE_FILE_BYTES

    d = _npz_only(tmp_path)
    path = d / "selected_decode_interpolation" / "raw_data.npz"
    with open(path, "ab") as f:
        f.truncate(MAX_PROFILE_FILE_BYTES + 1)
    (msg,) = _errors(d)
    assert msg == f"{path}: decode: is {MAX_PROFILE_FILE_BYTES + 1} bytes; at most {MAX_PROFILE_FILE_BYTES} bytes are accepted"


def test_npz_extra_members_are_not_read(tmp_path: Path) -> None:
    d = _npz_only(tmp_path)
    _npz_with_member(d, "junk", (10**11,))
    load_profile(d)


def test_json_deep_nesting(tmp_path: Path) -> None:
    d = _json_only(tmp_path)
    (d / "decode_raw_data.json").write_text('{"z_itl": ' + "[" * 100_000 + "]" * 100_000 + "}")
    (msg,) = _errors(d)
    assert msg.endswith("decode_raw_data.json: decode: invalid JSON: nested too deeply")


def test_json_file_size_bound(tmp_path: Path) -> None:
    from scaler.profile_io import MAX_PROFILE_FILE_BYTES

    d = _json_only(tmp_path)
    path = d / "decode_raw_data.json"
    path.write_text(path.read_text() + " " * MAX_PROFILE_FILE_BYTES)
    (msg,) = _errors(d)
    assert msg.endswith(f"is {path.stat().st_size} bytes; at most {MAX_PROFILE_FILE_BYTES} bytes are accepted")


@pytest.mark.parametrize("digits, message", [(400, "must be a number: too large for a float"), (5000, None)])
def test_json_huge_integer(tmp_path: Path, digits: int, message: str | None) -> None:
    d = _json_only(tmp_path)
    path = d / "decode_raw_data.json"
    path.write_text(path.read_text().replace('"max_kv_tokens": 932000', '"max_kv_tokens": ' + "9" * digits))
    (msg,) = _errors(d)
    if message:  # OverflowError traceback before
        assert msg.endswith(f"decode.max_kv_tokens: {message}")
    else:  # Python refuses to parse integers of more than 4300 digits
        assert "decode: invalid JSON: Exceeds the limit (4300 digits)" in msg


def test_json_profile_refuses_booleans_strings_and_nesting(tmp_path: Path) -> None:
    d = _json_only(tmp_path)
    data = json.loads((d / "decode_raw_data.json").read_text())
    _edit(d, "decode", z_itl=[True] + data["z_itl"][1:], x_kv_usage=["0.1"] + data["x_kv_usage"][1:],
          z_thpt_per_gpu=[[x] for x in data["z_thpt_per_gpu"]], max_kv_tokens=[5, -1])
    msgs = sorted(m.split(": ", 1)[1] for m in _errors(d))
    assert msgs == [
        "decode.max_kv_tokens: must be a number, got list",
        "decode.x_kv_usage: must be an array of numbers: element [0] is str",
        "decode.z_itl: must be an array of numbers: element [0] is bool",
        "decode.z_thpt_per_gpu: must be an array of numbers: element [0] is list",
    ]


def test_point_bound_per_table(tmp_path: Path) -> None:
    from scaler.core.profile import MAX_PROFILE_POINTS

    d = _json_only(tmp_path)
    n = MAX_PROFILE_POINTS + 1
    _edit(d, "prefill", prefill_isl=list(range(1, n + 1)), prefill_ttft=[1.0] * n, prefill_thpt_per_gpu=[1.0] * n)
    msgs = _errors(d)
    assert len(msgs) == 3
    assert all(m.endswith(f"has {n} points; at most {MAX_PROFILE_POINTS} are accepted") for m in msgs)


def test_a_profile_at_the_point_bound_loads(tmp_path: Path) -> None:
    from scaler.core.profile import MAX_PROFILE_POINTS

    d = _json_only(tmp_path)
    n = MAX_PROFILE_POINTS
    rng = np.random.default_rng(1)
    kv, ctx = rng.uniform(0, 1, n), rng.uniform(100, 8000, n)
    _edit(d, "decode", x_kv_usage=kv.tolist(), y_context_length=ctx.tolist(), z_itl=(5 + 20 * kv).tolist(),
          z_thpt_per_gpu=(1000 + 5000 * kv).tolist())
    from scaler.profile_io import MAX_PROFILE_FILE_BYTES

    assert (d / "decode_raw_data.json").stat().st_size < MAX_PROFILE_FILE_BYTES / 2
    assert len(load_profile(d).decode_itl_ms) == n


@pytest.mark.parametrize("src", [SYNTHETIC, MEASURED], ids=["synthetic", "measured"])
def test_shipped_profiles_fit_the_bounds_with_room(src: Path) -> None:
    from scaler.core.profile import MAX_PROFILE_POINTS
    from scaler.profile_io import MAX_PROFILE_FILE_BYTES

    for path in src.rglob("*"):
        if path.is_file():
            assert path.stat().st_size * 100 < MAX_PROFILE_FILE_BYTES, path
    assert len(load_profile(src).decode_itl_ms) * 100 < MAX_PROFILE_POINTS
