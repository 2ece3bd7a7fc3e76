"""`nerve rules check` and `nerve rules test`."""

from __future__ import annotations

import argparse
import sys

from reflexes.cases import case_files, run_file
from reflexes.errors import RuleSetError
from reflexes.loader import load_rules


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = sub.add_parser("rules", help="check and test reflex rule files")
    rsub = rules.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    check = rsub.add_parser(
        "check", help="validate rule files; exit 1 with file:line: rule: reason per error"
    )
    check.add_argument("paths", nargs="+", metavar="PATH", help="rule files or folders")
    check.set_defaults(func=check_command)
    test = rsub.add_parser("test", help="run the *.test.yaml cases next to the rules")
    test.add_argument("paths", nargs="+", metavar="PATH", help="rule files or folders")
    test.add_argument("-q", "--quiet", action="store_true", help="print failures and the summary only")
    test.set_defaults(func=test_command)
    from nerve_cli.brain_cmd import register_deploy

    register_deploy(rsub)


def check_command(args: argparse.Namespace) -> int:
    try:
        rules = load_rules(args.paths)
    except RuleSetError as e:
        for err in e.errors:
            print(err, file=sys.stderr)
        print(f"{len(e.errors)} error(s)", file=sys.stderr)
        return 1
    tiers = {t: sum(1 for r in rules.reflexes if r.tier == t) for t in ("edge", "brain")}
    print(
        f"ok: {len(rules.reflexes)} reflexes ({tiers['edge']} edge, {tiers['brain']} brain) in {len(rules.sources)} file(s)"
    )
    return 0


def test_command(args: argparse.Namespace) -> int:
    files = case_files(args.paths)
    if not files:
        print(f"no *.test.yaml files found in or beside {' '.join(args.paths)}", file=sys.stderr)
        return 1
    passed = failed = 0
    for f in files:
        try:
            results = run_file(f)
        except RuleSetError as e:
            for err in e.errors:
                print(f"ERROR {err}", file=sys.stderr)
            failed += 1
            continue
        for r in results:
            if r.passed:
                passed += 1
                if not args.quiet:
                    print(f"PASS {r.file}:{r.line}: {r.name}")
            else:
                failed += 1
                print(f"FAIL {r.file}:{r.line}: {r.name}")
                for why in r.failures:
                    print(f"     {why}")
    print(f"rule cases: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1
