"""dfsring.core.cors: the CORS decision, exhaustively (hypothesis) and by example."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.core import cors
from dfsring.core.cors import CorsRule

SCHEMES = st.sampled_from(["http", "https"])
LABEL = st.sampled_from(["a", "b", "app", "x1", "cdn", "example", "com"])
HOST = st.lists(LABEL, min_size=1, max_size=3).map(".".join)
PORT = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
ORIGIN = st.builds(lambda s, h, p: f"{s}://{h}{p}", SCHEMES, HOST, PORT)
WILD = st.builds(lambda s, h, p: f"{s}://*.{h}{p}", SCHEMES, HOST, PORT)
PATTERN = st.one_of(ORIGIN, WILD, st.just("*"))
METHOD = st.sampled_from(cors.METHODS)
HEADER = st.sampled_from(["authorization", "content-type", "x-api-key", "dfs-context", "*"])
EXPOSE = st.sampled_from(["ETag", "x-amz-request-id", "x-amz-version-id", "etag"])
RULE = st.builds(
    lambda o, m, h, a, e: cors.make_rule(o, m, h, a, e),
    st.lists(PATTERN, min_size=1, max_size=4), st.lists(METHOD, min_size=1, max_size=3),
    st.lists(HEADER, max_size=3), st.integers(0, cors.MAX_AGE_S), st.lists(EXPOSE, max_size=2))
RULES = st.lists(RULE, max_size=4).map(cors.canonical)
# any header text a browser (or anyone) may send as Origin
ANY_ORIGIN = st.one_of(ORIGIN, st.text(max_size=80), st.just("null"),
                       st.builds(lambda o, t: o + t, ORIGIN, st.text(max_size=10)))
REQ_HEADERS = st.one_of(st.none(), st.lists(HEADER.filter(lambda h: h != "*"), max_size=3)
                        .map(", ".join), st.text(max_size=30))


def _allowing(rules: tuple[CorsRule, ...], origin: str, method: str) -> list[CorsRule]:
    return [r for r in rules if method in r.methods
            and any(cors.origin_matches(p, origin) for p in r.origins)]


@given(RULES, ANY_ORIGIN, METHOD)
def test_an_origin_no_rule_allows_is_never_reflected(rules: tuple[CorsRule, ...], origin: str,
                                                     method: str) -> None:
    out = cors.actual(rules, origin, method)
    allow = out.get("Access-Control-Allow-Origin")
    if allow is not None:
        assert allow in ("*", origin)
        assert _allowing(rules, origin, method)
        if allow == "*":
            assert any("*" in r.origins for r in _allowing(rules, origin, method))
    else:
        assert not _allowing(rules, origin, method) or not 0 < len(origin) <= cors.MAX_ORIGIN_LEN
    assert ("Vary" in out) == bool(rules)
    assert "Access-Control-Allow-Credentials" not in out


@given(RULES, ANY_ORIGIN, METHOD, REQ_HEADERS)
def test_a_preflight_is_allowed_exactly_when_one_rule_allows_all_of_it(
        rules: tuple[CorsRule, ...], origin: str, method: str, requested: str | None) -> None:
    out = cors.preflight(rules, origin, method, requested)
    names = cors.parse_header_list(requested)
    expected = names is not None and 0 < len(origin) <= cors.MAX_ORIGIN_LEN and any(
        "*" in r.headers or all(h in r.headers for h in names)
        for r in _allowing(rules, origin, method))
    assert (out is not None) == bool(expected)
    if out is not None:
        assert out["Access-Control-Allow-Origin"] in ("*", origin)
        assert method in out["Access-Control-Allow-Methods"].split(", ")
        assert "Origin" in out["Vary"]
        assert out.get("Access-Control-Allow-Headers", "") == ", ".join(names or ())


@given(RULES, ORIGIN, METHOD)
def test_no_rules_means_no_cors_at_all(rules: tuple[CorsRule, ...], origin: str,
                                       method: str) -> None:
    assert cors.actual((), origin, method) == {}
    assert cors.preflight((), origin, method, None) is None


@given(st.lists(PATTERN, min_size=1, max_size=3), HOST, SCHEMES, PORT)
def test_a_wildcard_matches_subdomains_only_of_its_own_scheme_and_port(
        origins: list[str], host: str, scheme: str, port: str) -> None:
    pattern = f"https://*.example.com{port}"
    assert cors.origin_matches(pattern, f"https://{host}.example.com{port}")
    assert not cors.origin_matches(pattern, f"https://example.com{port}")
    assert not cors.origin_matches(pattern, f"http://{host}.example.com{port}")
    assert not cors.origin_matches(pattern, f"https://{host}.example.com.evil{port}")
    assert not cors.origin_matches(pattern, f"https://{host}.example.com{port}9")
    assert not cors.origin_matches(pattern, f"https://evil.com/.example.com{port}")
    assert not cors.origin_matches(pattern, f"https://{host}..example.com{port}")


@given(RULES, RULES, RULES)
def test_the_merge_is_commutative_associative_idempotent_and_never_wider(
        a: tuple[CorsRule, ...], b: tuple[CorsRule, ...], c: tuple[CorsRule, ...]) -> None:
    for x, y, z in ((a, b, c), (None, b, c), (a, None, None)):
        merged = cors.merge_rules([x, y, z])
        assert merged == cors.merge_rules([z, x, y])
        assert merged == cors.merge_rules([cors.merge_rules([x, y]), z])
        assert cors.merge_rules([x, x]) == x
        for side in (x, y, z):
            if side is not None and merged is not None:
                assert set(merged) <= set(side)
    assert cors.merge_rules([None, None]) is None


@given(RULES)
def test_rules_survive_their_json_form(rules: tuple[CorsRule, ...]) -> None:
    assert cors.parse_rules(cors.rules_doc(rules)) == rules
    assert cors.parse_rules({"rules": cors.rules_doc(rules)}) == rules


@pytest.mark.parametrize(("doc", "words"), [
    ({"origins": ["*"]}, "a JSON list"),
    ([{"origins": [], "methods": ["GET"]}], "rule 0: a rule needs at least one origin"),
    ([{"origins": ["https://a.example/path"], "methods": ["GET"]}], "scheme://host"),
    ([{"origins": ["HTTPS://A.EXAMPLE"], "methods": ["GET"]}], "lower case"),
    ([{"origins": ["*"], "methods": ["TRACE"]}], "methods must be some of"),
    ([{"origins": ["*"], "methods": ["GET"], "max_age_s": -1}], "max_age_s"),
    ([{"origins": ["*"], "methods": ["GET"], "max_age_s": True}], "max_age_s"),
    ([{"origins": ["*"], "methods": ["GET"], "headers": ["bad header"]}], "headers"),
    ([{"origins": ["*"], "methods": ["GET"], "extra": 1}], "unknown field(s) extra"),
    ([{"origins": ["*"] * 65, "methods": ["GET"]}], "at most 64"),
    ([{"origins": ["*"], "methods": ["GET"]}] * 101, "at most 100 CORS rules"),
    ([{"origins": ["*"], "methods": ["GET"], "expose": ["bad header"]}], "expose"),
    ({"rules": [], "more": 1}, '{"rules": [...]}'),
])
def test_bad_rules_are_refused_naming_what_is_wrong(doc: object, words: str) -> None:
    with pytest.raises(ValueError) as info:
        cors.parse_rules(doc)
    assert words in str(info.value)


def test_a_preflight_echoes_the_requested_headers_and_the_max_age() -> None:
    rule = cors.make_rule(["https://app.example"], ["PUT", "GET"],
                          ["Authorization", "content-type"], 300)
    out = cors.preflight((rule,), "https://app.example", "PUT", "Content-Type, authorization")
    assert out == {"Access-Control-Allow-Origin": "https://app.example",
                   "Access-Control-Allow-Methods": "GET, PUT",
                   "Access-Control-Allow-Headers": "content-type, authorization",
                   "Access-Control-Max-Age": "300",
                   "Vary": "Origin, Access-Control-Request-Method, "
                           "Access-Control-Request-Headers"}
    assert cors.preflight((rule,), "https://app.example", "PUT", "x-other") is None
    assert cors.preflight((rule,), "https://other.example", "PUT", None) is None
    assert cors.preflight((rule,), "https://app.example", "DELETE", None) is None


def test_an_actual_answer_exposes_the_rule_s_expose_headers_besides_the_api_s_own() -> None:
    rule = cors.make_rule(["https://app.example"], ["GET"], expose=["x-amz-version-id", "ETag"])
    out = cors.actual((rule,), "https://app.example", "GET")
    names = out["Access-Control-Expose-Headers"].split(", ")
    assert names[:len(cors.EXPOSED)] == list(cors.EXPOSED)
    assert names[len(cors.EXPOSED):] == ["x-amz-version-id"]  # ETag is there already


def test_a_rule_without_expose_keeps_the_json_form_older_nodes_read() -> None:
    rule = cors.make_rule(["*"], ["GET"])
    assert "expose" not in cors.rules_doc([rule])[0]
    assert cors.parse_rules([{"origins": ["*"], "methods": ["GET"]}]) == (rule,)
    assert rule.expose == ()
