"""Bad input to every command (issue 11): one line on stderr that names the problem (and the valid choices
where there is a list of them), exit code 2, no traceback, nothing on stdout, and nothing lost: the results
store the command was pointed at is exactly as it was before.

Each case is its own test. The axis flags of run / compare have their own table in test_cli.py, the store
commands more in test_store.py, dvfs in test_dvfs.py; this table covers every other command and the spec
files, including hostile ones."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

VALID_NETWORKS = "valid choices: alexnet, efficientnet_b0, googlenet, lenet, mobilenet_v2, overfeat, resnet18, resnet50, vgg_a"


def _spec(layers: str, head: str = 'name = "bad"\ninput = [3, 8, 8]\ndefault_batch_size = 1\n') -> str:
    return f"{head}layers = [\n{layers}\n]\n"


#: Spec files by name: text, or bytes for a file that is not UTF-8.
SPECS: dict[str, str | bytes] = {
    "not-utf8.toml": b"\xff\xfe name = 'x'",
    "no-input.toml": 'name = "x"\ndefault_batch_size = 1\nlayers = [{name = "loss", type = "softmax_loss"}]\n',
    "unknown-key.toml": 'name = "x"\ninputs = [3, 8, 8]\n',
    "invalid.toml": 'name = "x\n',
    "negative.toml": _spec('{name = "conv1", type = "conv", filters = -5, kernel = 3},\n{name = "loss", type = "softmax_loss"},'),
    "huge-int.toml": _spec('{name = "fc1", type = "fc", outputs = 99999999999999999999},\n{name = "loss", type = "softmax_loss"},'),
    "bool-kernel.toml": _spec('{name = "conv1", type = "conv", filters = 4, kernel = true},\n{name = "loss", type = "softmax_loss"},'),
    "unknown-type.toml": _spec('{name = "c1", type = "convolution", filters = 4, kernel = 3},\n{name = "loss", type = "softmax_loss"},'),
    "cycle.toml": _spec('{name = "a", type = "relu", input = "b"},\n{name = "b", type = "relu", input = "a"},\n'
                        '{name = "loss", type = "softmax_loss"},'),
    "no-loss.toml": _spec('{name = "fc1", type = "fc", outputs = 10},'),
    "kernel-too-big.toml": _spec('{name = "conv1", type = "conv", filters = 4, kernel = 9},\n{name = "loss", type = "softmax_loss"},'),
    "deep.toml": 'name = "deep"\nx = ' + "[" * 5000 + "]" * 5000 + "\n",
    # the name of a layer becomes a module or scope name in every framework: no paths, no code
    "hostile-name.toml": _spec('{name = "__import__(\'os\').system(\'x\')", type = "relu"},\n{name = "loss", type = "softmax_loss"},'),
    "deep.prototxt": "layer { " * 5000 + "}" * 5000,
    "unterminated.prototxt": 'name: "x" layer { name: "a" type: "ReLU" ',
    "no-input.prototxt": 'name: "x" layer { name: "a" type: "ReLU" bottom: "data" top: "a" }',
    "unknown-layer.prototxt": 'name: "x" input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
                              'layer { name: "a" type: "Deconvolution" bottom: "data" top: "a" }',
}


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("specs")
    for name, text in SPECS.items():
        path = folder / name
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    (folder / "big.toml").write_text('name = "big"\n' + "#" * (17 << 20))  # over the 16 MiB a spec may be
    (folder / "folder.toml").mkdir()
    os.mkfifo(folder / "fifo.toml")  # reading it would block for ever
    (folder / "zero.toml").symlink_to("/dev/zero")  # reading it would never end
    return folder


@pytest.fixture
def stored(tmp_path, monkeypatch) -> Path:
    """A results store with one complete run in it, which every command below is pointed at."""
    from cnnbench.results.record import Result
    from cnnbench.results.store import Store

    db = tmp_path / "kept.sqlite"
    with Store(db) as store:
        session = store.begin_session("compare", ["compare", "--frameworks", "caffe"], [{}, {}])
        for position, batch in enumerate((2, 4)):
            store.add_result(session, position, Result(
                framework="caffe", network="lenet", batch_size=batch, device="cpu", precision="fp32",
                kernels="native", threads=None, status="ok", time_per_iter_ms=1.0 + batch,
                images_per_s=1000.0 / (1.0 + batch) * batch, windows=[]))
        store.end_session(session, "complete")
    monkeypatch.setenv("CNNBENCH_DB", str(db))
    return db


def _dump(db: Path) -> list:
    with sqlite3.connect(db) as con:
        return [con.execute(f"SELECT * FROM {table} ORDER BY id").fetchall() for table in ("sessions", "results")]


CASES = [
    # command, arguments, what the line must say
    ("list", ["--bogus"], "unrecognized arguments: --bogus"),
    ("history", ["--limit", "x"], "--limit must be a whole number >= 0, not 'x'"),
    ("history", ["--limit", "-3"], "--limit must be a whole number >= 0, not '-3'"),
    ("show", [], "the following arguments are required: RUN"),
    ("show", ["99"], "no run '99' in"),
    ("show", ["abc"], "valid choices: a run id (1), latest, or -K for the K-th newest"),
    ("show", ["-5"], "only 1 run is stored"),
    ("report", ["1", "--format", "xml"], "unknown report format 'xml'; valid choices: md, csv, json"),
    ("report", ["1", "--plot", "{tmp}/figure.gif"], "unknown figure format 'gif'; valid choices: .png, .svg, .pdf"),
    ("report", ["1", "--plot", "{tmp}/no/such/folder/figure.png"], "does not exist"),
    ("report", ["1", "--baseline", "7"], "no run '7' in"),
    ("report", ["1", "--kind", "pie"], "unknown figure kind 'pie'; valid choices: auto, energy, batch"),
    ("recommend", [], "the following arguments are required: --framework, --network"),
    ("recommend", ["--framework", "nosuch", "--network", "lenet"], "stored frameworks: caffe; networks: lenet"),
    ("layers", ["--framework", "nosuch"], "unknown framework 'nosuch'; valid choices: caffe, "),
    ("layers", [], "--framework is required (or --preset layers)"),
    ("layers", ["--framework", "caffe", "--network", "lenet", "--batch-size", "2,4"], "--batch-size takes one value with 'layers'"),
    ("layers", ["--framework", "caffe", "--network", "lenet", "--plot", "{tmp}/f.txt"], "valid choices: png, svg, pdf"),
    ("layers", ["--framework", "caffe", "--network", "lenet", "--memory-limit", "lots"], "--memory-limit takes a size such as 512M or 4G"),
    ("verify", ["--frameworks", "caffe,nosuch"], "unknown framework 'nosuch'; valid choices: caffe, "),
    ("verify", ["--frameworks", "caffe", "--seed", "x"], "--seed must be a whole number >= 0, not 'x'"),
    ("verify", ["--frameworks", "caffe", "--batch-size", "0"], "--batch-size must be a positive whole number, not '0'"),
    ("verify", ["--frameworks", "caffe", "--precision", "fp8"], "unknown precision 'fp8'; valid choices: fp32, fp16, bf16, tf32"),
    ("verify", ["--frameworks", "caffe", "--device", "gpu"], "unknown device 'gpu'; valid choices: cpu, cuda, cuda:N"),
    ("verify", ["--frameworks", "caffe", "--timeout", "-1"], "--timeout must be a positive number"),
    ("env", [], "choose an action: create, list, remove"),
    ("env", ["create", "nosuch"], "unknown framework 'nosuch'; valid choices: caffe, "),
    ("env", ["remove", "torch"], "there is no environment for 'torch'"),
    ("networks", ["nosuch"], f"unknown network 'nosuch'; {VALID_NETWORKS}"),
    ("networks", ["import"], "name the .prototxt file to import"),
    ("networks", ["import", "{tmp}/missing.prototxt"], "missing.prototxt: cannot read: No such file or directory"),
    ("networks", ["import", "{proto}", "-o", "{tmp}/kept.toml"], "--output {tmp}/kept.toml exists; remove it or give another path"),
    ("networks", ["import", "{proto}", "-o", "{tmp}"], "unknown file type '(none)'; valid choices: .toml"),
    ("networks", ["import", "{proto}", "-o", "{tmp}/lenet.py"], "unknown file type '.py'; valid choices: .toml"),
    ("networks", ["import", "{proto}", "-o", "{tmp}/no/such/folder/lenet.toml"], "the folder {tmp}/no/such/folder does not exist"),
    ("networks", ["alexnet", "-o", "{tmp}/alexnet.toml"], "FILE and --output go with 'import' only"),
    ("layers", ["--framework", "caffe", "--network", "lenet", "--plot", "{tmp}/no/such/folder/f.png"], "the folder {tmp}/no/such/folder does not exist"),
    ("dvfs", ["--governors", "performance"], "--governors is for --cpu sweeps"),
    ("dvfs", ["--cpu", "--clocks", "1593:1410"], "--clocks is for GPU sweeps (leave out --cpu)"),
    ("dvfs", ["--device", "cpu"], "a GPU sweep runs its workload on the GPU: --device cuda or cuda:N, not 'cpu'"),
    ("dvfs", ["--max-settings", "0"], "--max-settings must be a positive whole number, not '0'"),
    ("compare", ["--preset", "nosuch"], "unknown preset 'nosuch'; valid choices: kernels, frameworks, cpu-libraries, "),
    ("compare", ["--resume", "1", "--batch-size", "8"], "--resume runs the grid of the stored run as it was planned; leave out --batch-size"),
    ("compare", ["--resume", "12"], "no run '12' in"),
    ("compare", ["--frameworks", "caffe", "--baseline", "latest-but-one"], "no run 'latest-but-one' in"),
    ("compare", ["--frameworks", "caffe", "--memory-limit", "10"], "--memory-limit must be at least 64M"),
    ("compare", ["--frameworks", "caffe", "--memory-limit", "4Q"], "(units K, M, G, T: powers of 1024), not '4Q'"),
    ("compare", ["--frameworks", "caffe", "--option", "xla"], "--option takes NAME=VALUE, not 'xla'"),
    ("compare", ["--frameworks", "caffe", "--option", "xla=on"], "unknown option 'xla' for caffe"),
    ("compare", ["--frameworks", "tensorflow", "--option", "xla=maybe"], "valid choices: on, off"),
    ("compare", ["--frameworks", "caffe", "--python", "caffe=/no/such/python"], "--python caffe=/no/such/python: no executable interpreter there"),
    ("compare", ["--frameworks", "caffe", "--python", "nosuch=python3"], "unknown framework 'nosuch'; valid choices: caffe, "),
    ("compare", ["--frameworks", "caffe", "--idle", "-1"], "--idle must be a number from 0 up to 3600, not '-1'"),
    ("compare", ["--frameworks", "caffe", "--threads", "lots"], "--threads takes whole numbers or physical, logical, not 'lots'"),
    ("compare", ["--frameworks", "caffe", "--iterations", "0"], "--iterations must be a positive whole number, not '0'"),
    ("compare", ["--frameworks", "caffe", "--warmup", "-1"], "--warmup must be a whole number >= 0, not '-1'"),
    ("compare", ["--frameworks", "caffe", "--db", "{tmp}"], "is a directory; give a file path to --db"),
    ("compare", ["--frameworks", "caffe", "--db", "{tmp}/not-a-db.sqlite"], "it is not a cnnbench results database"),
    ("compare", ["--frameworks", "caffe", "--networks", "lenet,nosuch"], f"unknown network 'nosuch'; {VALID_NETWORKS}"),
    ("compare", ["--frameworks", "caffe", "--stable", "tight"], "--stable takes a target in percent of the median, "
                                                               "above 0 and below 100 (e.g. 2 or 0.5%), not 'tight'"),
    ("compare", ["--frameworks", "caffe", "--stable", "0"], "--stable takes a target in percent of the median"),
    ("compare", ["--frameworks", "caffe", "--stable", "-5"], "not '-5'"),
    ("compare", ["--frameworks", "caffe", "--stable", "100%"], "above 0 and below 100 (e.g. 2 or 0.5%), not '100%'"),
    ("compare", ["--frameworks", "caffe", "--stable", "nan"], "not 'nan'"),
    ("run", ["--framework", "caffe", "--stable", "2%%"], "not '2%%'"),
    ("compare", ["--frameworks", "caffe", "--stable-max-time", "30"],
     "--stable-max-time goes with --stable (--stable [TARGET] --stable-max-time S)"),
    ("compare", ["--frameworks", "caffe", "--stable", "--stable-max-time", "0"], "--stable-max-time must be a positive number"),
    ("compare", ["--frameworks", "caffe", "--stable", "--stable-max-time", "soon"], "--stable-max-time must be a number, not 'soon'"),
    ("compare", ["--frameworks", "caffe", "--stable", "1", "--stable-max-time", "120", "--timeout", "60"],
     "--stable-max-time 120 must be below --timeout 60"),
    # a single-valued flag given twice: argparse kept the last, silently (issue 21)
    ("run", ["--framework", "caffe", "--batch-size", "8", "--batch-size", "16"],
     "cnnbench run: argument --batch-size: given twice ('8', then '16'); give it once"),
    ("run", ["--framework", "caffe", "--network", "lenet", "--network", "alexnet"],
     "argument --network: given twice ('lenet', then 'alexnet')"),
    ("compare", ["--frameworks", "caffe", "--device", "cpu", "--device", "cuda"], "argument --device: given twice"),
    ("compare", ["--frameworks", "caffe", "--batch", "2", "--batch-size", "4"], "argument --batch-size: given twice"),
    ("history", ["--db", "{tmp}/a.sqlite", "--db", "{tmp}/b.sqlite"], "argument --db: given twice"),
]

SPEC_CASES = [
    ("not-utf8.toml", "cannot read: not UTF-8 text"),
    ("no-input.toml", "missing required top-level key 'input'"),
    ("unknown-key.toml", "unknown top-level key 'inputs'; valid keys: name, description, input, "),
    ("invalid.toml", "invalid TOML"),
    ("negative.toml", "layer 'conv1': 'filters' must be a positive int up to 2147483647, not -5"),
    ("huge-int.toml", "'outputs' must be a positive int up to 2147483647, not 99999999999999999999"),
    ("bool-kernel.toml", "layer 'conv1': 'kernel' must be a positive int or a list [h, w]"),
    ("unknown-type.toml", "unknown type 'convolution'"),
    ("cycle.toml", "input 'b' is a later layer (a cycle or forward reference)"),
    ("no-loss.toml", "softmax_loss"),
    ("kernel-too-big.toml", "layer 'conv1'"),
    ("deep.toml", "nested too deeply for a network spec"),
    ("hostile-name.toml", "layer #1: 'name' must be letters, digits, _ and -"),
    ("deep.prototxt", "messages nested deeper than 64"),
    ("unterminated.prototxt", "invalid prototxt: expected a field name or '}', found the end of the file"),
    ("no-input.prototxt", "no input"),
    ("unknown-layer.prototxt", "Deconvolution"),
    ("big.toml", "larger than 16 MiB, too large for a network spec"),
    ("folder.toml", "cannot read: is not a file"),
    ("fifo.toml", "cannot read: is not a file"),
    ("zero.toml", "cannot read: is not a file"),
    ("missing.toml", "cannot read: no such file"),
]


def check_one_line(proc, expected: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0], lines[0]
    assert proc.stdout == "", proc.stdout


@pytest.mark.parametrize("command, args, expected", CASES, ids=[" ".join([c, *a]) for c, a, _ in CASES])
def test_bad_command_line(stored, tmp_path, command, args, expected):
    (tmp_path / "not-a-db.sqlite").write_text("these are not the results you are looking for\n")
    kept = tmp_path / "kept.toml"
    kept.write_text("# written by hand, never overwritten\n")
    before = _dump(stored)
    proto = str(ROOT / "tests" / "fixtures" / "convnet-benchmarks" / "alexnet.prototxt")
    proc = run_cli(command, *(a.replace("{tmp}", str(tmp_path)).replace("{proto}", proto) for a in args), timeout=120)
    check_one_line(proc, expected.replace("{tmp}", str(tmp_path)))
    assert _dump(stored) == before, "a bad command changed the results store"
    assert kept.read_text() == "# written by hand, never overwritten\n"
    assert not list(tmp_path.glob("**/*.png")) and not list(tmp_path.glob("*.py"))


@pytest.mark.parametrize("name, expected", SPEC_CASES, ids=[name for name, _ in SPEC_CASES])
@pytest.mark.parametrize("command", ["networks", "run"])
def test_bad_spec_file(stored, specs, command, name, expected):
    """Spec files are data: each is refused with one line, by the command that lists a network and by the
    one that would run it (before a worker starts), and whatever it says is never executed."""
    before = _dump(stored)
    path = str(specs / name)
    args = [path] if command == "networks" else ["--framework", "caffe", "--network", path, "--meters", "none"]
    proc = run_cli(command, *args, timeout=60)
    check_one_line(proc, expected)
    assert path in proc.stderr or name.startswith("missing")
    assert _dump(stored) == before


def test_repeatable_flags_still_repeat():
    """--option and --python are meant to be given several times (action="append"): still accepted."""
    from cnnbench.cli import build_parser

    args = build_parser().parse_args(["compare", "--option", "a=1", "--option", "b=2",
                                      "--python", "x=/p", "--python", "y=/q", "--batch-size", "2"])
    assert args.option == ["a=1", "b=2"] and args.python == ["x=/p", "y=/q"] and args.batch_size == "2"
