"""Config loading: env expansion, validation with dotted paths, the example file, the CLI."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from gateway.cli import main
from gateway.config import ConfigError, default_config, load_config, parse_config
from tests.support import ROOT

EXAMPLE_ENV = {
    "DEMO_KEY": "sk-a",
    "TEAM_A_KEY_SHA256": "a" * 64,
    "TEAM_B_KEY_SHA256": "b" * 64,
    "OPS_KEY_SHA256": "1" * 64,
    "OPENAI_API_KEY": "sk-openai",
}


def minimal(**extra):
    return {"keys": [{"name": "a", "key": "k"}], "providers": {"mock": {"kind": "mock"}}, **extra}


def problems(data, env=None) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(data, "c.yaml", env=env or {})
    return e.value.problems


def test_example_config_is_valid():
    cfg = load_config(ROOT / "config.example.yaml", env=EXAMPLE_ENV)
    assert "openai" in cfg.providers and cfg.keys[0].name == "demo"
    assert cfg.keys[1].digest() == "a" * 64
    assert cfg.usage.redis_url == ""


def test_env_expansion_with_defaults():
    cfg = parse_config(minimal(usage={"redis_url": "${R:-redis://x:1/0}", "prefix": "${P}"}), env={"P": "pp:"})
    assert cfg.usage.redis_url == "redis://x:1/0" and cfg.usage.prefix == "pp:"


def test_unset_variable_is_reported_with_path():
    assert problems(minimal(keys=[{"name": "a", "key": "${NOPE}"}])) == [
        "c.yaml: keys.0.key: environment variable NOPE is not set (set it, or write ${NOPE:-default})"
    ]


def test_unknown_field_is_an_error():
    p = problems(minimal(keys=[{"name": "a", "key": "k", "limits": {"rpn": 5}}]))
    assert p == ["c.yaml: keys.0.limits.rpn: unknown field; did you mean `rpm`?"]
    assert problems({**minimal(), "sever": {}}) == ["c.yaml: sever: unknown field; did you mean `server`?"]
    assert problems({**minimal(), "zzz": {}}) == ["c.yaml: zzz: unknown field (check the spelling)"]


def test_every_problem_is_reported():
    p = problems({"keys": [{"name": "a", "sha256": "zz"}, {"name": "b"}], "providers": {"x": {"kind": "nope"}}})
    assert any(s.startswith("c.yaml: keys.0.sha256: must be a sha256") for s in p)
    assert any(s.startswith("c.yaml: keys.1: give exactly one") for s in p)
    assert any(s.startswith("c.yaml: providers.x.kind:") for s in p)


def test_cross_references():
    p = problems(
        minimal(models=[{"name": "ghost/x"}, {"name": "alias", "deployments": [{"provider": "nope", "upstream": "m"}]}])
    )
    assert "c.yaml: models.0.name: unknown provider 'ghost'" in p
    assert "c.yaml: models.1.deployments.0.provider: unknown provider 'nope'" in p
    p = problems(minimal(keys=[{"name": "a", "key": "k"}, {"name": "a", "key": "k"}]))
    assert "c.yaml: keys.1.name: duplicate key name 'a'" in p


def test_ranges_and_types():
    p = problems(minimal(server={"port": 70000, "workers": 0}, providers={"mock": {"kind": "mock", "timeout": -1}}))
    assert {s.split(":")[1].strip() for s in p} == {"server.port", "server.workers", "providers.mock.timeout"}


def test_alias_needs_deployments_and_openai_needs_url():
    assert problems(minimal(models=[{"name": "alias"}]))[0].startswith("c.yaml: models.0: a name without 'vendor/'")
    assert (
        problems(minimal(providers={"o": {"kind": "openai"}}))[0]
        == "c.yaml: providers.o: kind 'openai' needs a base_url"
    )


def test_config_is_immutable():
    cfg = default_config()
    with pytest.raises(ValidationError):
        cfg.server.port = 1  # type: ignore[misc]


def test_key_secret_not_in_repr():
    cfg = parse_config(minimal(keys=[{"name": "a", "key": "sk-very-secret"}]), env={})
    assert "sk-very-secret" not in repr(cfg) and "sk-very-secret" not in str(cfg.keys[0])
    assert cfg.keys[0].digest() == hashlib.sha256(b"sk-very-secret").hexdigest()


def test_yaml_errors(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("keys: [\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert e.value.problems[0].startswith(f"{f}: line ")
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError):
        load_config(f)
    with pytest.raises(ConfigError):
        load_config(tmp_path / "missing.yaml")


def test_check_config_cli(tmp_path, capsys, monkeypatch):
    for k, v in EXAMPLE_ENV.items():
        monkeypatch.setenv(k, v)
    assert main(["check-config", str(ROOT / "config.example.yaml")]) == 0
    assert capsys.readouterr().out.startswith("ok: 4 keys")
    bad = tmp_path / "bad.yaml"
    bad.write_text("keys: [{name: a, sha256: nothex}]\nproviders: {m: {kind: mock}}\n")
    assert main(["check-config", str(bad)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"{bad}: keys.0.sha256: must be a sha256 hex digest (64 hex characters); see `switchyard hash-key`"
    )


def test_hash_key_cli(capsys):
    assert main(["hash-key", "sk-abc"]) == 0
    assert capsys.readouterr().out.strip() == hashlib.sha256(b"sk-abc").hexdigest()


def test_bedrock_is_refused_clearly():
    assert problems(minimal(providers={"aws": {"kind": "bedrock"}})) == [
        "c.yaml: providers.aws: kind 'bedrock' is not available in this version of Switchyard"
    ]
