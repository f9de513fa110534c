import json
import subprocess
import sys

import pytest

from lrt.cli import main
from tests.check_html import external_references


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lrt", *args], capture_output=True, text=True, timeout=600)


def test_ledger_json_reports_conservation_passing():
    out = run_cli("ledger", "--json", "P1.conservation")
    assert out.returncode == 0, out.stderr
    (result,) = json.loads(out.stdout)["claims"]
    assert result["id"] == "P1.conservation" and result["passed"] and result["measured"] <= 1e-10


def test_ledger_list_names_the_claims(capsys):
    assert main(["ledger", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "P1.conservation" in listed and "P1.gd_step_factor" in listed


def test_unknown_claim_figure_and_run_exit_2_without_traceback():
    for args, needle in [
        (("ledger", "P9.nothing"), "unknown claim 'P9.nothing'; expected one of: P1."),
        (("figure", "no-such-figure"), "unknown figure 'no-such-figure'; expected one of: "),
        (("bench", "no-such-bench"), "unknown benchmark 'no-such-bench'; expected one of: staircase"),
        (("figure",), "NAME is required"),
        (("figure", "conservation-drift", "--out", "x.gif"), "--out: expected a file ending in .png, .svg, .pdf"),
    ]:
        out = run_cli(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert needle in out.stderr and "Traceback" not in out.stderr


def test_figure_list_names_the_chapter_figures(capsys):
    assert main(["figure", "--list"]) == 0
    listed = capsys.readouterr().out
    for name in ("attention-toy-training", "conservation-drift", "gd-drift-vs-lr"):
        assert name in listed


@pytest.mark.parametrize("name", ["attention-toy-training", "conservation-drift", "gd-drift-vs-lr"])
def test_every_figure_renders(tmp_path, name, capsys):
    target = tmp_path / f"{name}.png"
    assert main(["figure", name, "--out", str(target)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 10_000


def test_svg_output(tmp_path, capsys):
    target = tmp_path / "drift.svg"
    assert main(["figure", "gd-drift-vs-lr", "--out", str(target)]) == 0
    assert target.read_text().lstrip().startswith("<?xml")


def test_html_checker_finds_external_scripts_and_styles():
    page = '<script src="https://cdn.example.org/x.js"></script><link rel="stylesheet" href="//cdn.example.org/s.css"><script src="_static/local.js"></script>'
    assert len(external_references(page)) == 2
    assert external_references('<a href="https://example.org">a link is fine</a>') == []


def test_run_and_bench_without_a_name_list_what_exists(capsys):
    assert main(["run"]) == 2 and "run: NAME is required" in capsys.readouterr().err
    assert main(["bench", "nope"]) == 2 and "unknown benchmark 'nope'" in capsys.readouterr().err
    assert main(["bench", "--list"]) == 0


def test_a_run_with_other_settings_never_overwrites_the_committed_file(tmp_path, monkeypatch, capsys):
    from lrt.experiments import ch06_beyond_diagonal as ch06

    committed = (ch06.DATA / ch06.FILES["vit-rank"]).read_bytes()
    monkeypatch.chdir(tmp_path)
    assert main(["run", "vit-rank", "--steps", "2"]) == 0
    assert "writing vit-rank.pt" in capsys.readouterr().err
    assert (tmp_path / "vit-rank.pt").is_file()
    assert (ch06.DATA / ch06.FILES["vit-rank"]).read_bytes() == committed
