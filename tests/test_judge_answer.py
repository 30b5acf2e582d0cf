"""judges/answer.py: replies that are not usable JSON become AnswerError (uncodable), never a crash."""

from __future__ import annotations

import pytest

from sociolab.judges.answer import AnswerError, parse_answer
from sociolab.judges.codebook import load_codebook


@pytest.fixture(scope="module")
def warroom():
    return load_codebook("warroom")


def test_an_integer_too_long_for_python_is_an_answer_error_not_a_crash(warroom):
    # json accepts the syntax but int() refuses more than 4300 digits with a plain ValueError,
    # which has no .msg/.pos: the error text used to raise AttributeError out of parse_answer
    reply = '{"flags": ' + "7" * 5000 + "}"
    with pytest.raises(AnswerError, match="no valid JSON object .*digits"):
        parse_answer(reply, warroom)


def test_a_syntax_error_still_says_where(warroom):
    with pytest.raises(AnswerError, match=r"JSON error: .* at character \d+"):
        parse_answer('{"flags": {"phatic": true', warroom)
