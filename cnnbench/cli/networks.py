"""``cnnbench networks``: list the networks, show one layer by layer, import a Caffe prototxt."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cnnbench.config import UsageError
from cnnbench.spec import NetworkSpec


def add_parser(sub) -> None:
    p = sub.add_parser(
        "networks",
        help="the networks; NAME: its per-layer table; import FILE.prototxt: convert a Caffe definition",
        description="cnnbench networks                       list the networks\n"
        "cnnbench networks NAME|FILE             per-layer table: output shape, parameters, forward FLOPs\n"
        "cnnbench networks import FILE.prototxt  write a Caffe definition out in cnnbench's spec format",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="a network name, spec file or .prototxt, or 'import'")
    p.add_argument("file", nargs="?", metavar="FILE", help="with 'import': the .prototxt to convert")
    p.add_argument("-o", "--output", metavar="PATH", help="with 'import': write the spec here instead of stdout")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) if shape else "-"


def network_summary(spec: NetworkSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description,
        "source": spec.source,
        "input": list(spec.input_shape),
        "default_batch_size": spec.default_batch_size,
        "classes": spec.num_classes,
        "params": spec.param_count,
        # per image; a multiply-add is 2 FLOPs; only convolutions and fully connected layers count
        "forward_flops": spec.forward_flops,
        "training_flops": spec.training_flops,
    }


def network_detail(spec: NetworkSpec) -> dict[str, Any]:
    return {
        **network_summary(spec),
        "layers": [
            {
                "name": layer.name,
                "type": layer.type,
                "inputs": list(layer.inputs),
                "output_shape": list(layer.output_shape),
                "params": layer.param_count,
                "forward_flops": layer.forward_flops,
            }
            for layer in spec.layers
        ],
    }


def _list(as_json: bool) -> int:
    from tabulate import tabulate

    from cnnbench.spec.catalog import all_networks, resolve_network

    specs = [resolve_network(name) for name in all_networks()]
    if as_json:
        print(json.dumps({"networks": [network_summary(s) for s in specs]}, indent=2))
        return 0
    rows = [
        [s.name, _shape(s.input_shape), s.default_batch_size, f"{s.param_count:,}", f"{s.forward_flops / 1e9:,.3f}",
         s.description]
        for s in specs
    ]
    print(tabulate(rows, headers=["network", "input", "batch", "parameters", "GFLOP fwd/image", "description"],
                   disable_numparse=True))
    print("\nA path to a .toml spec or a Caffe .prototxt is accepted wherever a network name is.")
    return 0


def _show(name: str, as_json: bool) -> int:
    from tabulate import tabulate

    from cnnbench.spec.catalog import resolve_network

    spec = resolve_network(name)
    if as_json:
        print(json.dumps(network_detail(spec), indent=2))
        return 0
    rows = [
        [layer.name, layer.type, ", ".join(layer.inputs), _shape(layer.output_shape), f"{layer.param_count:,}",
         f"{layer.forward_flops:,}"]
        for layer in spec.layers
    ]
    rows.append(["total", "", "", "", f"{spec.param_count:,}", f"{spec.forward_flops:,}"])
    print(f"{spec.name}: {spec.description}" if spec.description else spec.name)
    print(f"input {_shape(spec.input_shape)}, default batch {spec.default_batch_size}, {spec.num_classes} classes, "
          f"from {spec.source}")
    print(tabulate(rows, headers=["layer", "type", "input", "output", "parameters", "FLOPs fwd/image"],
                   disable_numparse=True, colalign=("left", "left", "left", "left", "right", "right")))
    print(f"\nforward {spec.forward_flops / 1e9:,.3f} GFLOP/image, training (forward + backward) "
          f"{spec.training_flops / 1e9:,.3f} GFLOP/image; a multiply-add counts 2 FLOPs, convolutions and "
          "fully connected layers only.")
    return 0


def _import(file: str | None, output: str | None) -> int:
    if not file:
        raise UsageError("cnnbench networks import: error: name the .prototxt file to import")
    from cnnbench.spec.prototxt import dumps_spec_toml, prototxt_to_data
    from cnnbench.spec import parse_spec, read_text

    if output:
        from cnnbench.config import check_output_path

        # a spec the user may have edited by hand is never overwritten
        check_output_path(output, suffixes=(".toml",), overwrite=False, flag="--output")
    data = prototxt_to_data(read_text(file), file)
    spec = parse_spec(data, file)  # a definition we could not run is an error here, not later
    toml_text = dumps_spec_toml(data)
    if output:
        Path(output).write_text(toml_text)
        print(f"wrote {output}: {spec.name}, {len(spec.layers)} layers, {spec.param_count:,} parameters, "
              f"{spec.forward_flops / 1e9:,.3f} GFLOP forward/image", file=sys.stderr)
    else:
        sys.stdout.write(toml_text)
    return 0


def cmd_networks(args: argparse.Namespace) -> int:
    if args.name == "import":
        return _import(args.file, args.output)
    if args.file or args.output:
        raise UsageError("cnnbench networks: error: FILE and --output go with 'import' only")
    if args.name is None:
        return _list(args.json)
    return _show(args.name, args.json)
