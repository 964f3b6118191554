"""``cnnbench verify``: the same weights and input in every framework; the same loss, logits and gradients?"""

from __future__ import annotations

import argparse

from cnnbench.cli.options import add_python
from cnnbench.config import PRECISIONS, check_choice, check_device, positive_float, positive_int
from cnnbench.planning.requests import MAX_TIMEOUT_S, VerifyRequest

DEFAULTS = VerifyRequest()


def add_parsers(sub) -> None:
    p = sub.add_parser("verify", help="same weights, same input: same loss, logits and gradients in every framework?")
    p.add_argument("--frameworks", metavar="F1,F2", help="frameworks (default: every available one)")
    p.add_argument("--network", metavar="N", default=DEFAULTS.network, help=f"network name or spec file (default {DEFAULTS.network})")
    p.add_argument("--batch-size", metavar="B", default=DEFAULTS.batch_size, help=f"images (default {DEFAULTS.batch_size})")
    p.add_argument("--device", metavar="D", default=DEFAULTS.device, help=f"cpu, cuda or cuda:N (default {DEFAULTS.device})")
    p.add_argument("--precision", metavar="P", default=DEFAULTS.precision, help=f"{', '.join(PRECISIONS)} (default {DEFAULTS.precision})")
    p.add_argument("--seed", metavar="S", default=DEFAULTS.seed, help=f"seed of the weights and data (default {DEFAULTS.seed})")
    add_python(p)
    p.add_argument("--timeout", metavar="S", default=DEFAULTS.timeout, help=f"seconds per framework (default {DEFAULTS.timeout})")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_verify(args: argparse.Namespace) -> int:
    import json

    from cnnbench.spec.catalog import resolve_network
    from cnnbench.planning.cells import frameworks_of, pythons_for
    from cnnbench.plugins import get_host
    from cnnbench.execution.verify import verify, verify_table

    request = VerifyRequest.from_values(vars(args))
    host = get_host()
    frameworks = frameworks_of(host, request.frameworks)
    spec = resolve_network(request.network)
    batch = positive_int("--batch-size", request.batch_size)
    device = check_device(request.device)
    precision = check_choice("precision", request.precision, PRECISIONS)
    seed = positive_int("--seed", request.seed, allow_zero=True)
    timeout = positive_float("--timeout", request.timeout, MAX_TIMEOUT_S)
    outcomes, tensors = verify(frameworks, spec, host, batch_size=batch, device=device, precision=precision,
                               timeout=timeout, seed=seed, pythons=pythons_for(request.python, frameworks, host))
    if args.json:
        print(json.dumps({
            "network": spec.name, "batch_size": batch, "device": device, "precision": precision, "seed": seed,
            "reference": "caffe (float64)",
            "results": [o.as_dict() for o in outcomes],
        }, indent=2, default=str))
    else:
        print(f"verify {spec.name}, batch {batch}, {device}, {precision}, seed {seed}")
        print(verify_table(outcomes, tensors, precision))
    return 1 if any(o.status not in ("ok", "unsupported", "unavailable") for o in outcomes) else 0
