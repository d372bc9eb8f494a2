"""Run spec resolution: metadata over profile over settings, and errors that say where a bad value came from."""

from __future__ import annotations

import pytest

from shared.settings import Settings
from shared.spec import SpecError, build_spec, metadata_overrides, parse_profile


def settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


def test_defaults_come_from_settings() -> None:
    spec = build_spec(settings(default_base_model="gpt-4.1-mini-2025-04-14", default_validation_split=0.2), metadata={})
    assert spec.model == "gpt-4.1-mini-2025-04-14"
    assert spec.validation_split == 0.2
    assert spec.deployment.sku == "Standard" and spec.deployment.capacity == 1
    assert spec.gate is None


def test_metadata_overrides_profile_which_overrides_settings() -> None:
    profile = parse_profile("team-a", b'{"model": "gpt-4.1-2025-04-14", "suffix": "team-a", '
                            b'"hyperparameters": {"n_epochs": 2}, "gate": {"max_full_valid_loss": 1.0}}')
    spec = build_spec(
        settings(),
        metadata={"suffix": "override", "seed": "7", "gate_min_valid_token_accuracy": "0.5", "deploy": "false"},
        profile_name="team-a",
        profile=profile,
    )
    assert spec.profile == "team-a"
    assert spec.model == "gpt-4.1-2025-04-14"
    assert spec.suffix == "override"
    assert spec.seed == 7
    assert spec.hyperparameters.n_epochs == 2
    assert spec.gate is not None
    assert spec.gate.max_full_valid_loss == 1.0 and spec.gate.min_valid_token_accuracy == 0.5
    assert spec.deployment.enabled is False


def test_bad_values_name_field_and_origin() -> None:
    with pytest.raises(SpecError) as err:
        build_spec(settings(), metadata={"suffix": "has spaces!", "n_epochs": "zero"})
    text = str(err.value)
    assert "suffix = 'has spaces!'" in text and "(from blob metadata)" in text
    assert "hyperparameters.n_epochs = 'zero'" in text


def test_bad_profile_value_is_attributed_to_the_profile() -> None:
    with pytest.raises(SpecError, match=r"seed = -1: .*\(from the profile\)"):
        build_spec(settings(), metadata={}, profile_name="p", profile={"seed": -1})


def test_profile_must_be_a_json_object() -> None:
    with pytest.raises(SpecError, match="not valid JSON"):
        parse_profile("p", b"{nope")
    with pytest.raises(SpecError, match="must be a JSON object"):
        parse_profile("p", b"[1, 2]")


def test_unknown_metadata_keys_are_reported_not_applied() -> None:
    doc, unknown = metadata_overrides({"Model": "x", "colour": "blue", "profile": "p"})
    assert doc == {"model": "x"}
    assert unknown == ["colour"]


def test_a_flat_profile_is_refused_naming_each_key_and_where_it_belongs() -> None:
    with pytest.raises(SpecError) as refused:
        parse_profile("team-a", b'{"n_epochs": 2, "gate_max_full_valid_loss": 0.5, "suffix": "ok"}')
    message = str(refused.value)
    assert message.startswith("profile 'team-a': ")
    assert "unknown key 'n_epochs' (it belongs at hyperparameters.n_epochs" in message
    assert "unknown key 'gate_max_full_valid_loss' (it belongs at gate.max_full_valid_loss" in message
    assert "'suffix'" not in message


def test_unknown_nested_and_misplaced_keys_are_refused() -> None:
    with pytest.raises(SpecError, match=r"unknown key 'deployment.capacty'"):
        parse_profile("p", b'{"deployment": {"capacty": 2}}')
    with pytest.raises(SpecError, match=r"unknown key 'hyperparameters.seed'"):
        parse_profile("p", b'{"hyperparameters": {"seed": 1}}')
    with pytest.raises(SpecError, match=r"unknown key 'colour' \(known: .*deployment"):
        parse_profile("p", b'{"colour": "blue"}')
    with pytest.raises(SpecError, match=r"unknown key 'profile' \(the profile is chosen by blob metadata"):
        parse_profile("p", b'{"profile": "other"}')


def test_a_nested_profile_with_priority_is_accepted() -> None:
    doc = parse_profile("p", b'{"priority": 5, "hyperparameters": {"n_epochs": 2}, "gate": {"max_train_loss": 1}}')
    spec = build_spec(settings(), metadata={"PRIORITY": "7"}, profile_name="p", profile=doc)
    assert spec.priority == 7 and spec.hyperparameters.n_epochs == 2
