"""Issue 12: the CLI fits people's habits (80 columns, checked before it works)."""

from __future__ import annotations

import os
import types

import numpy as np
import onnx
import pytest

from graphopt.cli.bench_table import display_names, speedup_lines

FAST = ("--duration", "0.1", "--min-iterations", "5", "--sessions", "1", "--energy", "none",
        "--max-seconds", "1")


def _error_line(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    return lines[0]


def test_bench_table_fits_80_columns(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    optimized = tmp_path / "a-rather-long-file-name-for-a-model.opt.onnx"
    code, _, err = run_cli("optimize", "zoo:tiny_cnn", "-o", str(optimized))
    assert code == 0, err
    code, stdout, err = run_cli("bench", "zoo:tiny_cnn", str(optimized), *FAST)
    assert code == 0, err
    assert max(len(line) for line in stdout.splitlines()) <= 80, stdout
    header = next(line for line in stdout.splitlines() if line.split()[:1] == ["model"])
    assert header.split() == ["model", "backend", "prec", "p50", "ms", "[95%", "CI]", "speedup",
                              "fidelity"]
    assert optimized.name in stdout and str(tmp_path) not in stdout.split("vs")[0]
    assert "baseline" in stdout and "startup and settings" not in stdout
    assert "p99 ms" not in stdout and "--verbose" in stdout
    assert " vs zoo:tiny_cnn on ort-cpu: " in " ".join(stdout.split())  # speedup in words

    monkeypatch.setenv("COLUMNS", "250")  # the wide table: every column on one line
    code, stdout, err = run_cli("bench", "zoo:tiny_cnn", *FAST, "--verbose")
    assert code == 0, err
    assert "startup and settings" in stdout and "p99 ms" in stdout


def _result(model: str, backend: str = "ort-cpu", optimization: str = "all"):
    return types.SimpleNamespace(model=model, backend=backend,
                                 settings={"graph_optimization": optimization})


def _pairing(*comparisons):
    def comparison_of(index):
        if index == 0:
            return None
        low, estimate, high = comparisons[index - 1]
        verdict = ("faster" if low > 1 else "slower" if high < 1
                   else "no detectable difference")
        data = {"speedup": estimate, "ci_low": low, "ci_high": high, "confidence": 0.95,
                "verdict": verdict}
        return types.SimpleNamespace(to_dict=lambda: data)

    return types.SimpleNamespace(comparison_of=comparison_of)


def test_speedup_lines_say_when_the_rewrite_did_nothing_on_the_backend():
    results = [_result("zoo:resnet50"), _result("build/demo/resnet50.opt.onnx"),
               _result("zoo:resnet50", "openvino-cpu")]
    lines = speedup_lines(results, _pairing((0.97, 1.0, 1.03), (1.4, 1.5, 1.6)))
    assert lines[0] == (
        "resnet50.opt.onnx on ort-cpu vs zoo:resnet50 on ort-cpu: 1.000x (95% CI"
        " 0.970-1.030), no detectable difference: the rewrite changed nothing measurable on"
        " this backend (onnxruntime applies the same fusions when it loads a model)")
    # another backend is not "the rewrite": only the figure and the verdict
    assert lines[1].endswith("1.500x (95% CI 1.400-1.600), faster")
    assert "interleaved" in lines[-1]
    slower = speedup_lines(results[:2], _pairing((0.8, 0.85, 0.9)))
    assert slower[0].endswith("faster") is False and "is slower on this backend" in slower[0]
    unoptimized = [_result("zoo:resnet50", optimization="disabled"),
                   _result("b.onnx", optimization="disabled")]
    assert "(" not in speedup_lines(unoptimized, _pairing((0.9, 1.0, 1.1)))[0].split(":")[-1]
    assert speedup_lines(results, None) == []


def test_display_names_keep_paths_apart_when_names_collide():
    assert display_names(["zoo:mlp", "a/m.onnx", "b/m.onnx", "c/x.onnx"]) == {
        "zoo:mlp": "zoo:mlp", "a/m.onnx": "a/m.onnx", "b/m.onnx": "b/m.onnx",
        "c/x.onnx": "x.onnx"}


@pytest.mark.parametrize(("passes", "fragment"), [
    ("fuse(max_rounds=0)", "fuse(max_rounds=0): must be at least 1"),
    ("cleanup(iterations=-3)", "cleanup(iterations=-3): must be at least 1"),
    ("cleanup(target_opset=5)", "the model is at opset 17; cleanup raises opsets, never lowers"),
    ("cleanup(target_opset=99)", "cleanup(target_opset=99): expected an opset from 1 to"),
    ("", "--passes '': no pass given"),
    (" , ", "no pass given"),
])
def test_bad_pass_options_are_one_line_and_nothing_is_written(tmp_path, run_cli, passes,
                                                              fragment):
    out = tmp_path / "o.onnx"
    code, _, err = run_cli("optimize", "zoo:tiny_cnn", "-o", str(out), "--passes", passes)
    line = _error_line(code, err)
    assert fragment in line and "Assertion" not in line
    assert not out.exists()


@pytest.mark.parametrize(("spec", "fragment"), [
    ("ort-cpu@threads=abc", "option threads: expected a whole number, got 'abc'"),
    ("ort-cpu@threads=-2", "option threads: expected a whole number >= 0, got -2"),
    ("ort-cpu@spin=maybe", "option spin: expected true/false"),
])
def test_bad_backend_option_values_are_refused_before_any_work(tmp_path, run_cli, spec,
                                                               fragment):
    out = tmp_path / "r.json"
    code, _, err = run_cli("bench", "zoo:tiny_cnn", "-b", spec, "--json", str(out))
    assert fragment in _error_line(code, err)
    assert "invalid literal" not in err and not out.exists()


def _single_input_array(tmp_path):
    model = onnx.load(tmp_path / "m.onnx")
    dims = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    return model.graph.input[0].name, np.random.default_rng(0).random(dims, np.float32)


def test_npy_inputs_for_a_single_input_model(tmp_path, run_cli):
    code, _, err = run_cli("optimize", "zoo:tiny_cnn", "-o", str(tmp_path / "m.onnx"))
    assert code == 0, err
    _, array = _single_input_array(tmp_path)
    np.save(tmp_path / "x.npy", array)
    code, stdout, err = run_cli("optimize", str(tmp_path / "m.onnx"), "-o",
                                str(tmp_path / "o.onnx"), "--inputs", str(tmp_path / "x.npy"))
    assert code == 0, err
    assert "verified on:" in stdout and "x.npy" in stdout

    (tmp_path / "notes.npy").write_text("not an array\n")
    (tmp_path / "notes.txt").write_text("not an array\n")
    np.save(tmp_path / "objects.npy", np.array([{}], dtype=object), allow_pickle=True)
    for name, fragment in (("notes.npy", "not an .npy file (no NumPy array header)"),
                           ("objects.npy", "graphopt reads numeric arrays only"),
                           ("notes.txt", "a folder of images, an .npy (single-input models)")):
        code, _, err = run_cli("optimize", str(tmp_path / "m.onnx"), "-o",
                               str(tmp_path / "o2.onnx"), "--inputs", str(tmp_path / name))
        line = _error_line(code, err)
        assert fragment in line and "allow_pickle" not in line


def test_nan_in_inputs_is_named_as_the_input(tmp_path, run_cli):
    code, _, err = run_cli("optimize", "zoo:tiny_cnn", "-o", str(tmp_path / "m.onnx"))
    assert code == 0, err
    name, array = _single_input_array(tmp_path)
    array.flat[0] = np.nan
    np.savez(tmp_path / "nan.npz", **{name: array})
    code, _, err = run_cli("optimize", str(tmp_path / "m.onnx"), "-o",
                           str(tmp_path / "o.onnx"), "--inputs", str(tmp_path / "nan.npz"))
    assert code == 0, err
    assert f"input '{name}' (1 NaN)" in err and "changed the outputs" not in err


def test_custom_operator_that_onnxruntime_cannot_run_suggests_no_verify(tmp_path, run_cli):
    model = onnx.parser.parse_model(
        '<ir_version: 8, opset_import: ["" : 17, "com.acme": 1]>'
        " g (float[2] x) => (float[2] y) { t = Relu(x) y = com.acme.Foo(t) }")
    onnx.save(model, tmp_path / "custom.onnx")
    out = tmp_path / "o.onnx"
    code, _, err = run_cli("optimize", str(tmp_path / "custom.onnx"), "-o", str(out))
    line = _error_line(code, err)
    assert "com.acme" in line and "--no-verify" in line and not out.exists()
    code, _, err = run_cli("optimize", str(tmp_path / "custom.onnx"), "-o", str(out),
                           "--no-verify")
    assert code == 0, err and out.exists()


@pytest.mark.parametrize("option", ["-o", "--report", "--json"])
def test_output_paths_are_checked_before_any_work(tmp_path, run_cli, option):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    command = (["bench", "zoo:tiny_cnn", *FAST] if option == "--json"
               else ["optimize", "zoo:tiny_cnn", "-o", str(tmp_path / "m.onnx")])
    for target, fragment in ((tmp_path / "folder", "is a folder, expected a file name"),
                             (tmp_path / "file" / "x.json", "Not a directory")):
        if option == "-o":
            args = ["optimize", "zoo:tiny_cnn", "-o", str(target)]
        else:
            args = [*command, option, str(target)]
        code, stdout, err = run_cli(*args)
        assert fragment in _error_line(code, err)
        assert "graphopt bench" not in stdout and "passes" not in stdout  # no work done
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_read_only_parent_is_refused_before_any_work(tmp_path, run_cli):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, _, err = run_cli("optimize", "zoo:tiny_cnn", "-o", str(folder / "m.onnx"))
        assert "permission denied" in _error_line(code, err)
    finally:
        folder.chmod(0o755)


def _dynamic_conv(path):
    """Conv 3->4 on an input [N, 3, H, W]: MACs grow with H and W."""
    model = onnx.parser.parse_model(
        "<ir_version: 8, opset_import: [\"\" : 17]>"
        " g (float[N, 3, H, W] x) => (float[N, 4, H, W] y)"
        " <float[4, 3, 3, 3] w = {" + ",".join(["0.1"] * 108) + "}>"
        " { y = Conv<pads = [1, 1, 1, 1]>(x, w) }")
    onnx.save(model, path)
    return path


def test_shape_on_inspect_optimize_and_bench(tmp_path, run_cli):
    model = str(_dynamic_conv(tmp_path / "dyn.onnx"))
    code, stdout, err = run_cli("inspect", model, "--json")
    assert code == 0 and json_load(stdout)["macs"] == 4 * 27  # dynamic dims counted as 1
    assert "MACs count dynamic dims as 1 (x: H, W)" in " ".join(err.split())
    code, stdout, err = run_cli("inspect", model, "--json", "--shape", "x:1x3x8x8")
    assert code == 0 and err == "" and json_load(stdout)["macs"] == 4 * 27 * 64

    out, report = tmp_path / "o.onnx", tmp_path / "r.json"
    code, stdout, err = run_cli("optimize", model, "-o", str(out), "--report", str(report),
                                "--shape", "x:1x3x8x8")
    assert code == 0, err
    assert "input shapes: x 1x3x8x8" in stdout and "dynamic input dims" not in err
    assert json_load(report.read_text())["input_shapes"] == {
        "x": {"dims": [1, 3, 8, 8], "defaulted": []}}
    assert [d.dim_value for d in onnx.load(out).graph.input[0].type.tensor_type.shape.dim] == [
        1, 3, 8, 8]
    code, _, err = run_cli("optimize", model, "-o", str(out))
    assert code == 0 and "dynamic input dims set by default: x (H=32, W=32)" in " ".join(
        err.split())

    bench_json = tmp_path / "b.json"
    code, stdout, err = run_cli("bench", model, *FAST, "--shape", "x:1x3x16x16", "--json",
                                str(bench_json))
    assert code == 0, err
    data = json_load(bench_json.read_text())
    (result,) = data["results"]
    assert result["model"] == model  # the user's name, not the scratch copy's
    assert result["cost"]["macs"] == 4 * 27 * 256  # the cost model sees the measured shape
    assert data["input_shapes"] == {model: {"x": {"dims": [1, 3, 16, 16], "defaulted": []}}}
    assert f"shapes: {model}: x 1x3x16x16" in " ".join(stdout.split())

    for args, fragment in ((("x:1x3x16",), "has rank 4"), (("y:1x3x4x4",), "no model has"),
                           (("x:1x3xAxB",), "whole numbers"), (("x:2x4x8x8",), "fixed at 3")):
        code, _, err = run_cli("bench", model, *FAST, "--shape", *args)
        assert fragment in _error_line(code, err)


def json_load(text):
    import json

    return json.loads(text)


def test_json_numbers_versions_and_bench_json_on_stdout(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = tmp_path / "r.json"
    code, stdout, err = run_cli("optimize", "zoo:mlp", "-o", str(tmp_path / "m.onnx"),
                                "--passes", "cleanup", "--report", str(report))
    assert code == 0, err
    data = json_load(report.read_text())
    assert data["graphopt_version"] and data["command"] == "optimize"
    fidelity = data["passes"][0]["fidelity"]  # cleanup changes nothing here: no noise at all
    assert fidelity["sqnr_db"] is None and fidelity["sqnr_db_inf"] == 1
    assert '"inf"' not in report.read_text()
    code, stdout, err = run_cli("optimize", "zoo:mlp", "-o", str(tmp_path / "m.onnx"),
                                "--passes", "cleanup", "--json")
    assert code == 0 and json_load(stdout)["fidelity"]["sqnr_db_inf"] == 1

    code, stdout, err = run_cli("bench", "zoo:mlp", *FAST, "--json", "-")
    assert code == 0, err
    data = json_load(stdout)  # the JSON alone on stdout, the table on stderr
    assert data["graphopt_version"] and data["results"][0]["model"] == "zoo:mlp"
    assert "graphopt bench" in err and not (tmp_path / "-").exists()

    for args in (("inspect", "zoo:mlp", "--json"), ("passes", "--json"), ("zoo", "--json")):
        code, stdout, err = run_cli(*args)
        assert code == 0 and json_load(stdout)["graphopt_version"], (args, err)


def test_zoo_lists_by_name_with_its_cache_and_says_when_it_builds(tmp_path, run_cli,
                                                                  monkeypatch):
    monkeypatch.setenv("GRAPHOPT_CACHE_DIR", str(tmp_path / "cache"))
    code, _, err = run_cli("inspect", "zoo:tiny_cnn")  # generated in memory: nothing cached
    assert code == 0 and "building" not in err
    code, _, err = run_cli("inspect", "zoo:squeezenet")
    assert code == 0, err
    assert f"building zoo:squeezenet, cached in {tmp_path / 'cache' / 'zoo'}" in " ".join(
        err.split())
    code, _, err = run_cli("inspect", "zoo:squeezenet")
    assert code == 0 and "building" not in err  # once
    code, stdout, _ = run_cli("zoo", "--json")
    data = json_load(stdout)
    assert data["models"]["squeezenet"]["spec"] == "zoo:squeezenet"
    assert data["cache"]["folder"] == str(tmp_path / "cache" / "zoo")
    assert data["cache"]["files"] == 1 and data["cache"]["bytes"] > 1_000_000
    code, stdout, _ = run_cli("zoo")
    assert "--clear-cache" in stdout and "1 files" in stdout
    code, stdout, _ = run_cli("zoo", "--clear-cache")
    assert code == 0 and "removed" in stdout and not (tmp_path / "cache" / "zoo").exists()


def test_inspect_side_by_side_and_optimize_into_a_folder(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    out = tmp_path / "out"
    code, stdout, err = run_cli("optimize", "zoo:tiny_cnn", "zoo:mlp", "-o", str(out),
                                "--report", str(out))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "mlp.opt.onnx", "mlp.report.json", "tiny_cnn.opt.onnx", "tiny_cnn.report.json"]
    code, stdout, err = run_cli("inspect", "zoo:tiny_cnn", str(out / "tiny_cnn.opt.onnx"))
    assert code == 0, err
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in stdout.splitlines() if line.count("│") == 4}
    assert rows["nodes"] == ["10", "8"] and rows["BatchNormalization"] == ["2", "0"]
    code, stdout, _ = run_cli("inspect", "zoo:tiny_cnn", "zoo:mlp", "--json")
    assert [m["model"] for m in json_load(stdout)["models"]] == ["zoo:tiny_cnn", "zoo:mlp"]
    code, _, err = run_cli("optimize", "zoo:tiny_cnn", "zoo:mlp", "--json")
    assert "--json prints one report" in _error_line(code, err)


def test_version_help_and_python_m_without_heavy_imports(run_cli):
    import subprocess
    import sys

    import graphopt
    from graphopt.cli import COMMANDS, app, load_commands

    code, stdout, _ = run_cli("--version")
    assert code == 0 and stdout.strip() == f"graphopt {graphopt.__version__}"
    heavy = ("onnx", "onnxruntime", "onnx_ir", "sympy", "numpy")
    for args in (["--version"], ["--help"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "graphopt", *args],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                    if line.startswith("import time:")}
        assert not imported & set(heavy), (args, imported & set(heavy))
    assert "tune" in proc.stdout and "zoo" in proc.stdout
    load_commands()
    registered = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert registered == set(COMMANDS)  # the --help table names every command


def test_explain_passes_fuse_and_one_list_syntax(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out, report = tmp_path / "o.onnx", tmp_path / "r.json"
    code, stdout, err = run_cli("optimize", "zoo:mlp", "-o", str(out), "--passes", "cleanup",
                                "--explain", "--report", str(report))
    assert code == 0, err
    assert "explain: 0 candidates declined by cleanup" in stdout
    assert json_load(report.read_text())["passes"][0]["explanations"] == []
    code, stdout, _ = run_cli("optimize", "zoo:mlp", "-o", str(out), "--explain", "--json")
    assert code == 0 and all("explanations" in p for p in json_load(stdout)["passes"])

    code, stdout, err = run_cli("passes", "fuse")
    assert code == 0, err
    assert "skip: [str,...] = ()" in stdout and "bn_fold" in stdout
    assert "fuse(skip=[a,b])" in stdout
    code, stdout, _ = run_cli("passes", "fuse", "--json")
    assert json_load(stdout)["rules"]["bn_fold"]["kind"] == "rule"
    code, stdout, _ = run_cli("passes")
    assert "[;...]" not in stdout and "[str,...]" in stdout
    code, _, err = run_cli("optimize", "zoo:mlp", "-o", str(out), "--passes",
                           "fuse(skip=bn_fold,add_bias)")
    assert "a list goes in brackets: skip=[a,b]" in _error_line(code, err)
    code, _, err = run_cli("passes", "nosuch")
    assert "unknown pass 'nosuch'" in _error_line(code, err)


def test_files_follow_the_umask(tmp_path, run_cli):
    previous = os.umask(0o027)
    try:
        code, _, err = run_cli("optimize", "zoo:mlp", "-o", str(tmp_path / "m.onnx"),
                               "--report", str(tmp_path / "r.json"))
    finally:
        os.umask(previous)
    assert code == 0, err
    assert (tmp_path / "m.onnx").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o640


def _imports(proc) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:")}


def test_shell_completion_script_install_and_completions(tmp_path, run_cli, monkeypatch):
    import subprocess
    import sys

    code, stdout, _ = run_cli("--help")  # the shell is detected: plain flags
    assert code == 0 and "--install-completion" in stdout and "--show-completion" in stdout
    # the shell named instead of detected (pytest may run without a shell above it)
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    code, stdout, err = run_cli("--show-completion", "bash")
    assert code == 0, err
    assert "_GRAPHOPT_COMPLETE=complete_bash" in stdout and "complete " in stdout
    assert stdout.rstrip().endswith("graphopt")  # the program, not pytest's name

    env = {**os.environ, "HOME": str(tmp_path)}
    # the fast path: the script comes without onnx, onnxruntime, onnx-ir or numpy
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "graphopt",
                           "--show-completion", "zsh"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0 and "_GRAPHOPT_COMPLETE=complete_zsh" in proc.stdout
    heavy = {"onnx", "onnxruntime", "onnx_ir", "sympy", "numpy"}
    assert not _imports(proc) & heavy

    proc = subprocess.run([sys.executable, "-m", "graphopt", "--install-completion", "bash"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "bash completion installed" in proc.stdout
    assert "_GRAPHOPT_COMPLETE" in (tmp_path / ".bash_completions" / "graphopt.sh").read_text()

    def complete(words: str) -> list[str]:
        cwords = words.split()
        proc = subprocess.run([sys.executable, "-m", "graphopt"], capture_output=True,
                              text=True, timeout=60,
                              env={**env, "_GRAPHOPT_COMPLETE": "complete_bash",
                                   "COMP_WORDS": words, "COMP_CWORD": str(len(cwords) - 1)})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert complete("graphopt opt") == ["optimize"]  # commands
    assert "--backend" in complete("graphopt bench --ba")  # a command's options


@pytest.mark.parametrize("command", ["", "optimize", "bench", "inspect", "passes", "tune",
                                     "debug", "report", "zoo", "backends"])
def test_help_has_no_odd_placeholders(run_cli, monkeypatch, command):
    monkeypatch.setenv("COLUMNS", "200")
    code, stdout, err = run_cli(*command.split(), "--help")
    assert code == 0, err
    assert "<bool>" not in stdout and "<list[" not in stdout
    assert "{" not in stdout and "}" not in stdout, stdout
    usage = next(line for line in stdout.splitlines() if "Usage:" in line).split()
    placeholders = usage[usage.index("[OPTIONS]"):]
    assert placeholders == [word.upper() for word in placeholders], usage  # in capitals
    if command in ("optimize", "inspect"):
        assert usage[-1] == "MODEL..."
    if command == "bench":
        assert "--backend" in stdout and "NAME,..." in stdout
    code, stdout, _ = run_cli("passes")
    assert "<bool>" not in stdout and "{" not in stdout


def test_a_missing_output_folder_is_one_line_and_not_created(tmp_path, run_cli):
    # as onnxsim and trtexec: a typo in the folder is an error, not a new folder
    missing = tmp_path / "buidl"
    for args in (["optimize", "zoo:tiny_cnn", "-o", str(missing / "m.onnx")],
                 ["optimize", "zoo:tiny_cnn", "-o", str(tmp_path / "m.onnx"),
                  "--report", str(missing / "r.json")],
                 ["bench", "zoo:tiny_cnn", *FAST, "--json", str(missing / "b.json")]):
        code, stdout, err = run_cli(*args)
        line = _error_line(code, err)
        assert f"folder {missing} does not exist" in line and "mkdir -p" in line, line
        assert "passes" not in stdout and "graphopt bench" not in stdout  # no work done
        assert not missing.exists() and not (tmp_path / "m.onnx").exists()
    # several models into a folder: the folder -o names is made, a missing parent is not
    code, _, err = run_cli("optimize", "zoo:tiny_cnn", "zoo:mlp", "-o", str(missing / "out"))
    assert "does not exist" in _error_line(code, err) and not missing.exists()
    code, _, err = run_cli("optimize", "zoo:tiny_cnn", "zoo:mlp", "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mlp.opt.onnx",
                                                                   "tiny_cnn.opt.onnx"]


def test_each_backend_has_its_own_baseline_and_baseline_picks_it(tmp_path, run_cli,
                                                                 monkeypatch):
    from graphopt.harness.pairs import baseline_groups

    # models outermost: (a, ort) (a, ov) (b, ort) (b, ov) (c, ort) (c, ov)
    measured = [(m, b) for m in "abc" for b in ("ort", "ov")]
    assert baseline_groups(measured) == [[0, 2, 4], [1, 3, 5]]
    assert baseline_groups(measured, "b") == [[2, 0, 4], [3, 1, 5]]
    assert baseline_groups([("a", "ort"), ("a", "ov")]) == [[0, 1]]  # one model: backends
    assert baseline_groups([("a", "ov"), ("b", "ort"), ("b", "ov")]) == [[0, 2]]  # a failed

    monkeypatch.setenv("COLUMNS", "80")
    out = tmp_path / "b.json"
    code, stdout, err = run_cli("bench", "zoo:tiny_cnn", "zoo:mlp", "--backend",
                                "ort-cpu,ort-cpu@opt=basic", *FAST, "--baseline", "zoo:mlp",
                                "--json", str(out))
    assert code == 0, err
    assert max(len(line) for line in stdout.splitlines()) <= 80, stdout
    data = json_load(out.read_text())
    assert [p["baseline"] for p in data["paired"]] == ["zoo:mlp on ort-cpu",
                                                       "zoo:mlp on ort-cpu@opt=basic"]
    for paired in data["paired"]:
        (comparison,) = paired["comparisons"]
        assert comparison["model"] == "zoo:tiny_cnn"
        assert comparison["backend"] == paired["baseline"].split(" on ")[1]  # same backend
    rows = [r for r in map(str.split, stdout.splitlines())
            if r[:1] in (["zoo:tiny_cnn"], ["zoo:mlp"]) and r[1].startswith("ort-cpu")]
    assert [(r[0], r[1] != "ort-cpu") for r in rows] == [  # each backend's rows together
        ("zoo:tiny_cnn", False), ("zoo:mlp", False), ("zoo:tiny_cnn", True), ("zoo:mlp", True)]
    assert [r[-2] if r[-2] == "baseline" else "x" for r in rows] == ["x", "baseline"] * 2
    text = " ".join(stdout.split())
    assert "zoo:tiny_cnn on ort-cpu vs zoo:mlp on ort-cpu: " in text
    assert "zoo:tiny_cnn on ort-cpu@opt=basic vs zoo:mlp on ort-cpu@opt=basic: " in text
    assert "on ort-cpu@opt=basic vs zoo:mlp on ort-cpu:" not in text  # never across backends

    code, _, err = run_cli("bench", "zoo:tiny_cnn", *FAST, "--baseline", "zoo:nosuch")
    assert "--baseline zoo:nosuch: not one of the MODELs" in _error_line(code, err)


def test_explanations_name_unnamed_nodes_by_operator_and_output(tmp_path, run_cli,
                                                              monkeypatch):
    from onnx import helper, numpy_helper

    from graphopt.passes.rewrite_utils import node_label

    monkeypatch.setenv("COLUMNS", "250")
    graph = helper.make_graph(  # no node has a name, as in many exported files
        [helper.make_node("Conv", ["x", "w"], ["conv1_1"]),
         helper.make_node("Softmax", ["conv1_1"], ["prob"], axis=1),
         helper.make_node("Exp", ["prob"], ["y"])],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 4, 4])],
        [numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    report = tmp_path / "r.json"
    code, stdout, err = run_cli("optimize", str(tmp_path / "m.onnx"), "-o",
                                str(tmp_path / "o.onnx"), "--passes", "convert_float",
                                "--budget", "sqnr>=10", "--explain", "--report", str(report))
    assert code == 0, err
    assert "Exp (output 'y') stays fp32" in stdout
    assert "Softmax (output 'prob') stays fp32" in stdout
    (explained,) = [p["explanations"] for p in json_load(report.read_text())["passes"]]
    assert any(line.startswith("Exp (output 'y')") for line in explained)

    import onnx_ir as ir

    named = ir.node("Conv", [], name="conv1", num_outputs=1)
    assert node_label(named) == "conv1 (Conv)"
    unnamed = ir.node("Conv", [], num_outputs=1)
    unnamed.outputs[0].name = "conv1_1"
    assert node_label(unnamed) == "Conv (output 'conv1_1')"
    assert node_label(ir.node("Relu", [], num_outputs=1)) == "unnamed Relu"
