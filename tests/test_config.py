"""Config: typed, validated once, every problem listed; secrets never from the TOML."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import ConfigError
from rules.policy import ROUTING_RULE_IDS
from sync.config import load_config, packaged_example


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_config_example_loads_and_points_at_the_sandbox() -> None:
    config = load_config(Path("config.example.toml"))
    assert config.vitally.base_url == "http://127.0.0.1:8765"
    assert config.salesforce.instance_url == "http://127.0.0.1:8765"
    assert config.policy.allocation.arr_threshold == 20000
    assert config.policy.routing.order == ROUTING_RULE_IDS


def test_config_packaged_example_matches_the_repository_copy() -> None:
    assert packaged_example().read_text() == Path("config.example.toml").read_text()


def test_config_lists_every_problem_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[vitally]
base_url = "ftp://nowhere"
api_key = "sk_live_do_not_put_me_here"
timeout_seconds = "soon"
[sync]
on_conflict = "sometimes"
[rules]
order = ["product_led.mrr_band", "no.such_rule"]
[rules.product_led]
mrr_min = 2000
[rules.countries]
tier1 = ["Atlantis"]
[bogus]
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = caught.value.problems
    expected = [
        "bogus: unknown section",
        "vitally.base_url: expected an http(s) URL, got 'ftp://nowhere'",
        "vitally.api_key: secrets are not read from the config file; use api_key_env or api_key_file",
        "vitally.timeout_seconds: expected a number, got 'soon'",
        "sync.on_conflict: expected 'report' or 'overwrite', got 'sometimes'",
        f"rules.order: unknown routing rule 'no.such_rule' (known: {', '.join(ROUTING_RULE_IDS)})",
        "rules.product_led: mrr_min must not exceed mrr_max",
        "rules.countries.tier1: unknown country 'Atlantis'",
    ]
    for problem in expected:
        assert problem in problems
    assert not any("sk_live_do_not_put_me_here" in p for p in problems)


# Both real services, their secrets named by environment variables.
SECRETS_FROM_ENVIRONMENT = (
    '[vitally]\nbase_url = "https://acme.rest.vitally.io"\napi_key_env = "TEST_VITALLY_KEY"\n'
    '[salesforce]\ninstance_url = "https://acme.my.salesforce.com"\ntoken_env = "TEST_SF_TOKEN"\n'
)


def test_config_secret_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, SECRETS_FROM_ENVIRONMENT)
    monkeypatch.setenv("TEST_VITALLY_KEY", "sk_123")
    monkeypatch.setenv("TEST_SF_TOKEN", "00Dtoken")
    config = load_config(path)
    assert config.vitally.api_key == "sk_123"
    assert "sk_123" not in repr(config)
    assert "00Dtoken" not in repr(config)


def test_config_a_secret_from_the_environment_is_stripped_like_one_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Kubernetes secret made from a file often ends in a line break; in an HTTP header it made
    # http.client raise a ValueError quoting the header, token included, into stderr and the run
    # history (found by a review of the follow-ups).
    path = write(tmp_path, SECRETS_FROM_ENVIRONMENT)
    monkeypatch.setenv("TEST_VITALLY_KEY", "sk_123\n")
    monkeypatch.setenv("TEST_SF_TOKEN", "  00Dtoken\r\n")
    config = load_config(path)
    assert config.vitally.api_key == "sk_123"
    assert config.salesforce.token == "00Dtoken"


def test_config_a_secret_with_a_line_break_inside_is_refused_unshown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, SECRETS_FROM_ENVIRONMENT.replace('token_env = "TEST_SF_TOKEN"', 'token_file = "token"'))
    (tmp_path / "token").write_text("00D\ntoken-secret\n")
    (tmp_path / "token").chmod(0o600)
    monkeypatch.setenv("TEST_VITALLY_KEY", "sk_1\x07secret")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = caught.value.problems
    assert "vitally.api_key_env: the secret holds a line break or another control character" in problems
    assert "salesforce.token_file: the secret holds a line break or another control character" in problems
    assert not any("secret" in p and ("sk_1" in p or "token-secret" in p) for p in problems)


def test_config_missing_secret_for_a_real_service_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_KEY", raising=False)
    path = write(tmp_path, '[vitally]\nbase_url = "https://acme.rest.vitally.io"\napi_key_env = "NOPE_KEY"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "vitally.api_key: no secret found (set environment variable NOPE_KEY)" in caught.value.problems


def test_config_secret_file_must_be_owner_only(tmp_path: Path) -> None:
    key = tmp_path / "vitally.key"
    key.write_text("sk_file\n")
    os.chmod(key, 0o644)
    path = write(tmp_path, f'[vitally]\nbase_url = "https://a.rest.vitally.io"\napi_key_file = "{key}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"vitally.api_key_file: {key} must be readable by its owner only (chmod 600)" in caught.value.problems
    os.chmod(key, 0o600)
    assert load_config(path).vitally.api_key == "sk_file"


def test_config_territories_extend_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, '[territories]\ndefault_region = "EU"\nSingapore = ["India", "AE"]\n')
    regions = load_config(path).policy.territories
    assert regions.region_of("AE") == "Singapore"
    assert regions.region_of("US") == "US"
    assert regions.region_of("DE") == "EU"


def test_config_pools_are_validated_with_every_problem_listed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[pools]]
team = "Wizards"
region = "US"

[[pools]]
team = "TAM"
region = "Mars"

[[pools]]
team = "TAE"
region = "US"
fallback_queue = "005notaqueue"
members = [
    { user_id = "00Qwrong", name = "A" },
    { user_id = "005000000000001AAA", name = "B", weight = 0 },
    { user_id = "005000000000002AAA", name = "C", colour = "blue" },
]
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = caught.value.problems
    assert "pools[0].team: expected one of 'TAE', 'TAM', 'CSM', 'BDR' or 'Onboarding', got 'Wizards'" in problems
    assert "pools[1].region: expected one of EU, Singapore, US or '*', got 'Mars'" in problems
    assert (
        "pools[2].fallback_queue: expected a Salesforce queue id (00G…, 15 or 18 characters), got '005notaqueue'"
        in problems
    )
    assert (
        "pools[2].members[0].user_id: expected a Salesforce user id (005…, 15 or 18 characters), got '00Qwrong'"
        in problems
    )
    assert "pools[2].members[1].weight: must be ≥ 1, got 0" in problems
    assert "pools[2].members[2].colour: unknown setting" in problems


def _one_pool(tmp_path: Path, fallback: str, *user_ids: str) -> Path:
    """A config with one TAE/US pool of these members (named A, B, …) and this fallback owner."""
    members = ", ".join(f'{{ user_id = "{user_id}", name = "{chr(65 + i)}" }}' for i, user_id in enumerate(user_ids))
    return write(
        tmp_path, f'[[pools]]\nteam = "TAE"\nregion = "US"\nfallback_owner = "{fallback}"\nmembers = [{members}]\n'
    )


def test_config_pool_ids_are_kept_in_their_18_character_form(tmp_path: Path) -> None:
    # Salesforce takes 15- or 18-character ids and answers with 18 (the mirror's User ids, the
    # OwnerIds read back): a member given by its 15-character id must compare equal to them, or a
    # deactivated user is still drawn (found by a review against the REST API's documentation).
    path = _one_pool(tmp_path, "00G000000000001", "005000000000001", "0058d000000ABcD", "005000000000003AAA")
    pool = load_config(path).pools["TAE", "US"]
    assert [m.user_id for m in pool.members] == ["005000000000001AAA", "0058d000000ABcDAAW", "005000000000003AAA"]
    assert pool.fallback_owner == "00G000000000001EAA"


def test_config_a_user_given_by_both_its_id_forms_is_one_member_twice(tmp_path: Path) -> None:
    path = _one_pool(tmp_path, "00G000000000001AAA", "005000000000001", "005000000000001AAA")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "pools[0].members[1].user_id: 005000000000001AAA is already in this pool" in caught.value.problems


@pytest.mark.parametrize("user_id", ["005", "0050000000001", "0050000000000010", "005000000000001AAAA"])
def test_config_a_user_id_of_another_length_is_refused(tmp_path: Path, user_id: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_one_pool(tmp_path, "00G000000000001AAA", user_id))
    expected = "pools[0].members[0].user_id: expected a Salesforce user id"
    assert any(problem.startswith(expected) for problem in caught.value.problems)


def test_config_example_pools_cover_every_team() -> None:
    pools = load_config(Path("config.example.toml")).pools
    assert {team for team, _ in pools} == {"TAM", "TAE", "BDR", "Onboarding"}
    assert load_config(Path("config.example.toml")).pool_for("TAE", "Singapore") is not None  # the "*" pool


def test_config_rules_countries_set_the_icp_tiers_and_the_score_tiers(tmp_path: Path) -> None:
    path = write(tmp_path, '[rules.countries]\ntier1 = ["Germany", "FR"]\ntier2 = []\n')
    policy = load_config(path).policy
    assert (policy.tier1_countries, policy.tier2_countries) == (("DE", "FR"), ())
    assert (policy.scoring.tier1_countries, policy.scoring.tier2_countries) == (("DE", "FR"), ())


REAL_SALESFORCE = '[salesforce]\ninstance_url = "https://acme.my.salesforce.com"\n'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("", "salesforce.token: no secret found (set token_env or token_file)", id="no-credentials"),
        pytest.param(
            'client_id_env = "TEST_SF_ID"\ntoken_env = "TEST_SF_TOKEN"\n',
            "salesforce: client_id and client_secret go together",
            id="id-without-secret",
        ),
        pytest.param(
            'token_env = "TEST_SF_TOKEN"\nbudget_share = 0\n',
            "salesforce.budget_share: must be ≥ 0.01, got 0",
            id="zero-budget",
        ),
        pytest.param(
            'token_env = "TEST_SF_TOKEN"\napi_version = "v59"\n',
            "salesforce.api_version: expected a version like 59.0, got 'v59'",
            id="bad-version",
        ),
        pytest.param(
            'token_env = "TEST_SF_TOKEN"\nmax_attempts = 0\n',
            "salesforce.max_attempts: must be ≥ 1, got 0",
            id="no-attempt",
        ),
    ],
)
def test_config_refuses_salesforce_settings_no_client_could_work_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, problem: str
) -> None:
    """The client takes its settings as given: these are refused here, before one is made."""
    monkeypatch.setenv("TEST_SF_ID", "3MVGid")
    monkeypatch.setenv("TEST_SF_TOKEN", "00Dtoken")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, REAL_SALESFORCE + text))
    assert problem in caught.value.problems


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            'api_key_env = "TEST_EMPTY_KEY"\n',
            "vitally.api_key: no secret found (set environment variable TEST_EMPTY_KEY)",
            id="empty-key",
        ),
        pytest.param("max_attempts = 0\n", "vitally.max_attempts: must be ≥ 1, got 0", id="no-attempt"),
        pytest.param("write_workers = 0\n", "vitally.write_workers: must be ≥ 1, got 0", id="no-worker"),
        pytest.param("max_wait_seconds = -1\n", "vitally.max_wait_seconds: must be ≥ 0, got -1", id="negative-wait"),
    ],
)
def test_config_refuses_vitally_settings_no_client_could_work_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, problem: str
) -> None:
    monkeypatch.setenv("TEST_EMPTY_KEY", "")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, '[vitally]\nbase_url = "https://acme.rest.vitally.io"\n' + text))
    assert problem in caught.value.problems
