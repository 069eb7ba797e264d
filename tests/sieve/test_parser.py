"""The Sieve grammar (RFC 5228 §8) and validation: every construct, the RFC's own examples,
and errors that name the right line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postbote.sieve import EXTENSIONS, MAX_SCRIPT_SIZE, SieveError, parse


def error_of(text: str) -> SieveError:
    with pytest.raises(SieveError) as info:
        parse(text)
    return info.value


def test_hash_and_bracket_comments_are_ignored() -> None:
    script = parse("# a comment\n/* a bracket\ncomment */ keep; # trailing\n/**/discard;")
    assert [c.name for c in script.commands] == ["keep", "discard"]
    assert script.commands[1].line == 4


def test_multiline_string_is_dot_unstuffed_and_keeps_line_breaks() -> None:
    script = parse('require "reject";\nreject text: # why\nline one\n..dotted\n.\n;\nkeep;')
    assert script.commands[1].positional == ["line one\n.dotted\n"]
    assert script.commands[2].line == 7


def test_multiline_string_with_crlf_line_ends() -> None:
    script = parse('require "reject";\r\nreject text:\r\nhi\r\n.\r\n;')
    assert script.commands[1].positional == ["hi\r\n"]


def test_quoted_string_escapes_and_embedded_newline() -> None:
    script = parse('require "fileinto";\nfileinto "a\\"b\\\\c\\d\ne";\nkeep;')
    assert script.commands[1].positional == ['a"b\\cd\ne']
    assert script.commands[2].line == 4


def test_numbers_with_quantifiers() -> None:
    sizes = [parse(f"if size :over {n} {{ }}").commands[0].tests[0].positional[0]
             for n in ("10", "10K", "2m", "1G")]
    assert sizes == [10, 10 * 1024, 2 * 1024 * 1024, 1024 ** 3]


def test_string_list_tags_and_nested_test_lists() -> None:
    script = parse('if anyof (not exists ["From", "Date"], allof (true, header :is :comparator '
                   '"i;octet" "x" ["a", "b"])) { stop; }')
    anyof = script.commands[0].tests[0]
    assert anyof.name == "anyof" and [t.name for t in anyof.tests] == ["not", "allof"]
    header = anyof.tests[1].tests[1]
    assert header.tags == {"is": None, "comparator": "i;octet"}
    assert header.positional == [["x"], ["a", "b"]]


def test_identifiers_and_tags_are_case_insensitive() -> None:
    script = parse('IF Header :IS "x" "y" { KEEP; }')
    assert script.commands[0].name == "if"
    assert script.commands[0].tests[0].tags == {"is": None}


def test_rfc5228_section_2_3_comment_example() -> None:
    parse('if size :over 100k { # this is a comment\n    discard;\n}')
    parse('if size :over 100K { /* this is a comment\n    this is still a comment */ discard /* this is a comment\n    */ ;\n}')


def test_rfc5228_section_2_6_and_3_examples() -> None:
    parse('require "fileinto";\nif header :contains "from" "coyote" {\n    discard;\n'
          '} elsif header :contains ["subject"] ["$$$"] {\n    discard;\n} else {\n'
          '    fileinto "INBOX";\n}')
    parse('if header :contains :comparator "i;octet" "Subject"\n  "MAKE MONEY FAST" {\n'
          '     discard;\n  }')
    parse('if header :contains ["From"] ["coyote"] {\n  redirect "acm@example.com";\n'
          '} elsif header :contains "Subject" "$$$" {\n  redirect "postmaster@example.com";\n'
          '} else {\n  redirect "field@example.com";\n}')
    parse('require ["fileinto", "reject"];\nrequire "fileinto";\nkeep;')
    parse('if header :contains "from" "coyote" {\n  fileinto_is_not_here; }'
          .replace("fileinto_is_not_here", "discard"))


def test_rfc5228_section_5_test_examples() -> None:
    parse('if address :is :all "from" "tim@example.com" { discard; }')
    parse('require "envelope";\nif envelope :all :is "from" "tim@example.com" { discard; }')
    parse('if not exists ["From","Date"] { discard; }')
    parse('if header :is ["X-Caffeine"] [""] { discard; }')
    parse('if anyof (size :over 1M, header :contains "subject" "x") { discard; }')


def test_rfc5228_section_9_full_example() -> None:
    parse('''#
# Example Sieve Filter
# Declare any optional features or extension used by the script
#
require ["fileinto"];

#
# Handle messages from known mailing lists
# Move messages from IETF filter discussion list to filter mailbox
#
if header :is "Sender" "owner-ietf-mta-filters@imc.org"
        {
        fileinto "filter";  # move to "filter" mailbox
        }
#
# Keep all messages to or from people in my company
#
elsif address :DOMAIN :is ["From", "To"] "example.com"
        {
        keep;               # keep in "In" mailbox
        }

#
# Try and catch unsolicited email.  If a message is not to me,
# or it contains a subject known to be spam, file it away.
#
elsif anyof (NOT address :all :contains
               ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject"
               ["*make*money*fast*", "*university*dipl*mas*"])
        {
        fileinto "spam";   # move to "spam" mailbox
        }
else
        {
        # Move all other (non-company) mail to "personal"
        # mailbox.
        fileinto "personal";
        }
''')


@pytest.mark.parametrize("text, line, words", [
    ('keep;\n\nfileinto "x";', 3, 'fileinto requires "fileinto"'),
    ('require "fileinto";\nfileinto :copy "x";', 2, ':copy requires "copy"'),
    ('keep;\nrequire "fileinto";', 2, "require must come before"),
    ('require "nonsense";', 1, 'unsupported extension "nonsense"'),
    ('keep;\nfrobnicate;', 2, "unknown command frobnicate"),
    ('if true {}\nif frob {}', 2, "unknown test frob"),
    ('keep;\nelse { }', 2, "else without a preceding if"),
    ('if true {}\nkeep;\nelsif true {}', 3, "elsif without a preceding if"),
    ('if true;', 1, "if needs a block"),
    ('keep {\n}', 1, "keep takes no block"),
    ('if\ntrue\n{ keep }', 3, "expected ';'"),
    ('require "fileinto";\nfileinto ["a", "b"];', 2, "fileinto needs a string"),
    ('if size 100 {}', 1, "size needs one of :over, :under"),
    ('if size :over "x" {}', 1, "size needs a number"),
    ('if header :is :contains "a" "b" {}', 1, ":contains conflicts with :is"),
    ('if header :comparator "i;foo" "a" "b" {}', 1, 'unknown comparator "i;foo"'),
    ('if header :comparator "i;ascii-numeric" "a" "b" {}', 1,
     'requires "comparator-i;ascii-numeric"'),
    ('if header :value "gt" "a" "b" {}', 1, ':value requires "relational"'),
    ('require "relational";\nif header :count "xx" "a" "b" {}', 2, ':count needs one of'),
    ('if header "a" {}', 1, "header takes 2 argument(s)"),
    ('if address :user "to" "x" {}', 1, ':user requires "subaddress"'),
    ('if allof true {}', 1, "allof needs a test list"),
    ('if (true) {}', 1, "needs exactly one test"),
    ('if not true, false {}', 1, "expected"),
    ('keep;\n\n"unterminated', 3, "unterminated string"),
    ('keep;\n/* open', 2, "unterminated /* comment"),
    ('require "reject";\nreject text:\nno end\n', 2, "unterminated text:"),
    ('keep;\nif header :is "a" ["b", ] {}', 2, "expected a string"),
    ('keep;\nkeep :flags ["x"];', 2, ':flags requires "imap4flags"'),
    ('keep;\n}', 2, "expected a command"),
    ('if size :over 99999999999999999999G {}', 1, "number too large"),
    ('keep;\n@', 2, "unexpected character"),
    ('require "vacation";\n\nvacation :days "3" "x";', 3, ":days needs a number"),
    ('require "mailbox";\nif mailboxexists {}', 2, "mailboxexists takes 1 argument"),
    ('if ' + 'not ' * 50 + 'true {}', 1, "nesting deeper"),
])
def test_invalid_scripts_name_the_problem_and_line(text: str, line: int, words: str) -> None:
    err = error_of(text)
    assert err.line == line, str(err)
    assert words in str(err)
    assert str(err).startswith(f"line {line}: ")


def test_every_listed_extension_can_be_required() -> None:
    script = parse("require [" + ", ".join(f'"{e}"' for e in EXTENSIONS) + "];")
    assert script.requires == frozenset(EXTENSIONS)


def test_oversized_script_is_refused() -> None:
    err = error_of("#" + "x" * MAX_SCRIPT_SIZE)
    assert "limit" in str(err)


SIEVE_ATOMS = st.sampled_from([
    "if", "elsif", "else", "require", "keep", "discard", "stop", "fileinto", "redirect",
    "header", "address", "envelope", "size", "not", "allof", "anyof", "exists", "true",
    ":is", ":contains", ":matches", ":over", ":comparator", ":copy", ":flags", "text:\n",
    "\n.\n", '"', '"x"', "[", "]", "(", ")", "{", "}", ",", ";", "\n", " ", "#", "/*", "*/",
    "10K", "3", "\\", '"fileinto"', "vacation", ":days", "..", "set", "string", ":lower",
    '"variables"', '"${1}"', '"a"', "require [\"variables\", \"fileinto\"];",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(SIEVE_ATOMS, max_size=40))
def test_random_token_soup_raises_only_sieve_error(atoms: list[str]) -> None:
    try:
        parse(" ".join(atoms))
    except SieveError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_raises_only_sieve_error(text: str) -> None:
    try:
        parse(text)
    except SieveError as err:
        assert err.line >= 1
