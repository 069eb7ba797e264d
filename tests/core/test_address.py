"""Envelope address normalisation: one form for every lookup."""

import pytest

from postbote.mail.address import Address, AddressError, parse_address


@pytest.mark.parametrize("text, expected", [
    ("Alice@Example.COM", "alice@example.com"),
    ("<bob@example.com>", "bob@example.com"),
    ("user+tag@example.com", "user+tag@example.com"),
    ("x@xn--bcher-kva.example", "x@bücher.example"),
    ("jörg@bücher.example", "jörg@bücher.example"),
    ('"a b"@example.com', "a b@example.com"),
    ("a@example.com.", "a@example.com"),
])
def test_addresses_are_normalised(text, expected):
    assert str(parse_address(text)) == expected


@pytest.mark.parametrize("text", ["", "bob", "@example.com", "a@", "a@@b", "a b@example.com",
                                  "a@exa mple.com", "a@-bad.example", "x" * 65 + "@example.com", "a..b@example.com"])
def test_invalid_addresses_are_refused_with_a_reason(text):
    with pytest.raises(AddressError):
        parse_address(text)


def test_subaddress_base_and_tag():
    a = parse_address("user+news@example.com")
    assert a.base == Address("user", "example.com") and a.tag == "news"
    assert parse_address("+x@example.com").base == Address("+x", "example.com")
