"""``synthmed dataset ...``: published synthetic datasets (docs/datasets.md).

One ``dataset`` command whose sub-commands come from two modules: making and publishing a
dataset (``dataset_publish_cmds``: ``create``, ``publish``) and using the datasets a site
mirrors (``dataset_site_cmds``: ``list``, ``show``, ``get``, ``verify``).
"""

from __future__ import annotations

import argparse

from . import dataset_publish_cmds, dataset_site_cmds


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("dataset", help="published synthetic datasets: create, publish, list, show, get, verify",
                       description="Synthetic datasets published in an index: each is a run of a pinned model "
                                   "(seeds, parameters, inputs), packed reproducibly, with its memorisation audit "
                                   "and card. Sites mirror them like models and can re-derive any item.")
    dsub = p.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND")
    dataset_publish_cmds.register(dsub)
    dataset_site_cmds.register(dsub)

    def usage(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)
