"""The hidden tests behind the exercise notebooks' check cells (alignlab.course.checks).

Every check must pass on the solutions, fail cleanly ("not attempted") on the generated
stubs, and fail on typical wrong implementations with a hint that names the mistake.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from wrong import BY_SET, WRONG

from alignlab.course import checks
from alignlab.course.checks import CHECKS, EXERCISE_SETS, check, max_points, run_check, summary

ROOT = Path(__file__).resolve().parents[1]

EXERCISES = [name for names in EXERCISE_SETS.values() for name in names]


def exercise_functions(folder: str, set_name: str) -> dict:
    """Execute a notebook's first code cell (imports) and its exercise cells; return the namespace."""
    nb = nbformat.read(ROOT / folder / f"{set_name}.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    ns: dict = {}
    exec(code[0], ns)
    for source in code[1:]:
        if "### BEGIN SOLUTION" in source or "YOUR CODE HERE" in source:
            exec(source, ns)
    return ns


@pytest.fixture(autouse=True)
def _fresh_results(monkeypatch):
    monkeypatch.delenv(checks.GRADES_FILE_ENV, raising=False)
    checks._RESULTS.clear()
    yield
    checks._RESULTS.clear()


def test_registry_covers_every_exercise_of_every_set():
    assert sorted(CHECKS) == sorted(EXERCISES)
    assert set(EXERCISE_SETS) == {p.stem for p in (ROOT / "solutions").glob("[0-9]*.ipynb")}
    for name in EXERCISES:
        assert max_points(name) >= 4, f"{name}: too few hidden tests"


@pytest.mark.parametrize("set_name", sorted(EXERCISE_SETS))
def test_every_check_passes_on_the_solutions(set_name):
    ns = exercise_functions("solutions", set_name)
    for name in EXERCISE_SETS[set_name]:
        passed, points, hint = CHECKS[name](ns[name])
        assert passed and points == max_points(name), f"{name}: {hint}"


@pytest.mark.parametrize("set_name", sorted(EXERCISE_SETS))
def test_every_check_fails_cleanly_on_the_generated_stubs(set_name, capsys):
    ns = exercise_functions("exercises", set_name)
    for name in EXERCISE_SETS[set_name]:
        n_args = len(inspect.signature(ns[name]).parameters)
        with pytest.raises(NotImplementedError, match="Hint: "):
            ns[name](*[torch.zeros(2)] * n_args)
        result = run_check(name, ns[name])
        assert (result.status, result.points, result.passed) == ("not attempted", 0, False)
        check(name, ns[name])  # prints, never raises
        assert f"⏳ {name}: not attempted yet" in capsys.readouterr().out


def test_every_check_has_at_least_two_typical_wrong_implementations():
    for name in EXERCISES:
        assert len(WRONG.get(name, [])) >= 2, f"{name}: add wrong implementations to tests/fixtures/wrong"


def test_the_wrong_implementations_mirror_the_checks_modules():
    """tests/fixtures/wrong/<set>.py holds the wrong versions of the exercises of course/checks/<set>.py."""
    for module, table in BY_SET.items():
        set_name = importlib.import_module(f"alignlab.course.checks.{module}").SET
        assert set(table) <= set(EXERCISE_SETS[set_name]), f"fixtures/wrong/{module}.py: {sorted(table)}"


WRONG_CASES = [(n, label, fn, words) for n, items in WRONG.items() for label, fn, words in items]


@pytest.mark.parametrize("name,label,fn,words", WRONG_CASES, ids=[f"{n}: {label}" for n, label, _, _ in WRONG_CASES])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_each_wrong_implementation_fails_with_a_diagnostic_hint(name, label, fn, words):
    result = run_check(name, fn)
    assert not result.passed and result.status == "failed"
    assert 0 <= result.points < result.max_points
    for word in words:
        assert word.lower() in result.hint.lower(), f"{label}: hint does not say {word!r}:\n{result.hint}"


def test_check_prints_a_pass_and_records_it(tmp_path, monkeypatch, capsys):
    grades = tmp_path / "grades.jsonl"
    monkeypatch.setenv(checks.GRADES_FILE_ENV, str(grades))
    ns = exercise_functions("solutions", "04_dpo")
    check("dpo_loss", ns["dpo_loss"])
    assert capsys.readouterr().out.strip() == "✅ dpo_loss: all 6 tests passed (6/6 points)"
    record = json.loads(grades.read_text().splitlines()[-1])
    assert record == {"name": "dpo_loss", "status": "passed", "points": 6, "max_points": 6, "hint": "",
                      "source": "cell"}
    summary("04_dpo")
    assert "dpo_loss     6/6  ✅ passed" in capsys.readouterr().out


def test_check_never_raises_and_explains_what_went_wrong(capsys):
    def crashes(*args):
        raise ValueError("shapes do not match")

    def returns_none(*args):
        return None

    def wrong_shape(r_c, r_r):
        return -torch.nn.functional.logsigmoid(r_c - r_r)  # forgot the mean

    def exits(*args):
        sys.exit(3)

    for fn, expected in [(crashes, "your function raised ValueError: shapes do not match"),
                         (exits, "your function raised SystemExit: 3"),
                         (returns_none, "did you forget the `return`?"),
                         (wrong_shape, "expected ()")]:
        check("bt_loss", fn)
        out = capsys.readouterr().out
        assert out.startswith("❌ bt_loss: ") and expected in out and "Traceback" not in out
    check("no_such_exercise", crashes)
    assert "no check named 'no_such_exercise'" in capsys.readouterr().out


def test_an_infinite_loop_is_stopped_by_the_time_limit(monkeypatch, capsys):
    monkeypatch.setenv(checks.TIMEOUT_ENV, "0.5")

    def spins(*args):
        while True:
            try:
                pass
            except Exception:  # a student's blanket except must not swallow the time limit
                pass

    check("kto_z0", spins)
    out = capsys.readouterr().out
    assert "❌ kto_z0: did not finish within 0.5 s (an infinite loop?)" in out
    assert checks.results()["kto_z0"].status == "timeout"


def test_ready_skips_training_until_the_function_is_implemented(capsys):
    ns = exercise_functions("exercises", "04_dpo")
    assert checks.ready("dpo_loss", ns["dpo_loss"]) is False
    assert "skipped: `dpo_loss` is not implemented yet" in capsys.readouterr().out
    checks._RESULTS.clear()
    assert checks.ready("dpo_loss", WRONG["dpo_loss"][0][1]) is True  # wrong but implemented: train anyway
    assert "has not passed all its checks" in capsys.readouterr().out


def test_grade_namespace_scores_missing_functions_zero(tmp_path, monkeypatch, capsys):
    grades = tmp_path / "grades.jsonl"
    monkeypatch.setenv(checks.GRADES_FILE_ENV, str(grades))
    ns = exercise_functions("solutions", "05_kto")
    del ns["kto_loss"]
    checks.grade_namespace("05_kto", ns)
    records = {r["name"]: r for r in map(json.loads, grades.read_text().splitlines())}
    assert records["kto_z0"]["points"] == 4 and records["kto_z0"]["source"] == "grader"
    assert records["kto_loss"]["status"] == "missing" and records["kto_loss"]["points"] == 0
    assert "total        4/9" in capsys.readouterr().out


def test_checks_are_deterministic_and_leave_the_global_rng_alone():
    ns = exercise_functions("solutions", "03_ppo")
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = [run_check(n, WRONG[n][0][1]) for n in ("ppo_clip_loss", "value_loss_clipped")]
    assert torch.rand(1) == before
    second = [run_check(n, WRONG[n][0][1]) for n in ("ppo_clip_loss", "value_loss_clipped")]
    assert first == second
    assert run_check("ppo_clip_loss", ns["ppo_clip_loss"]).passed


# --- 00 log-probs and 03's KL control (sets 00_logprobs, 03_rlhf_kl) -------------------------


def test_the_logprob_solutions_reproduce_the_library_on_a_padded_batch_of_a_real_gpt2():
    """The stand-in model behind the 00 checks is no shortcut: on a real (tiny, random) GPT-2 and a batch
    with left and right padding, the solutions give `sampling.sequence_logprobs` exactly."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from alignlab import sampling

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=13, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    ids = torch.randint(3, 13, (3, 9))
    attn = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1], [1] * 9, [0, 1, 1, 1, 1, 1, 0, 0, 0]])
    comp = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1, 0, 0, 0]])
    batch = sampling.Batch(ids, attn, comp, [""] * 3, [""] * 3, [True] * 3)
    ns = exercise_functions("solutions", "00_logprobs")
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn, position_ids=sampling.position_ids(attn)).logits
        mine = ns["sequence_logprobs"](ns["token_logprobs"](logits, ids, comp), comp)
        assert torch.allclose(mine, sampling.sequence_logprobs(model, batch), atol=1e-6)
        lib_tokens = sampling.token_logprobs(model, ids, attn)
        assert torch.allclose(ns["sequence_logprobs"](lib_tokens, comp), mine, atol=1e-6)


def test_the_kl_solutions_agree_with_the_library_and_the_controller_settles_at_its_target():
    from alignlab import losses as L
    from alignlab.methods import rl

    ns = exercise_functions("solutions", "03_rlhf_kl")
    g = torch.Generator().manual_seed(0)
    lp, ref = torch.randn(5, 7, generator=g) - 2, torch.randn(5, 7, generator=g) - 2
    mask = torch.zeros(5, 7)
    for i, (a, b) in enumerate([(2, 7), (3, 5), (0, 7), (6, 7), (1, 3)]):
        mask[i, a:b] = 1
    score = torch.randn(5, generator=g)
    mine = ns["token_rewards"](score, lp, ref, mask, 0.3)
    assert torch.equal(mine, rl.token_rewards(score, lp, ref, mask, 0.3))
    assert torch.allclose(mine.sum(1), score - 0.3 * ((lp - ref) * mask).sum(1), atol=1e-6)
    # a KL that falls as 1 / beta: the controller drives it to the target, as the library's does
    ctl, beta = L.AdaptiveKLController(0.01, target=2.0, horizon=100), 0.01
    for _ in range(200):
        kl = 0.1 / beta
        beta = ns["adaptive_beta"](beta, kl, 2.0, 48, 100)
        assert beta == pytest.approx(ctl.update(kl, 48), rel=1e-12)
    assert 0.1 / beta == pytest.approx(2.0, rel=1e-3)


def test_the_new_sets_are_found_by_file_name_and_by_their_checks_and_03_alone_still_means_ppo(tmp_path):
    from alignlab.course import grading

    plain = nbformat.v4.new_notebook()
    plain.cells = [nbformat.v4.new_code_cell("x = 1")]
    assert grading.detect_set(plain, tmp_path / "alice_logprobs.ipynb") == "00_logprobs"
    assert grading.detect_set(plain, tmp_path / "bob-rlhf-kl.ipynb") == "03_rlhf_kl"
    assert grading.detect_set(plain, tmp_path / "hw 03.ipynb") == "03_ppo"
    checked = nbformat.v4.new_notebook()
    checked.cells = [nbformat.v4.new_code_cell('check("adaptive_beta", adaptive_beta)')]
    assert grading.detect_set(checked, tmp_path / "untitled.ipynb") == "03_rlhf_kl"
