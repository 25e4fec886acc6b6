import logging

from imagegen_service.redact import REDACTED, RedactingFilter, redact

KEY = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz"


def test_the_whole_key_and_long_pieces_of_it_are_hidden():
    text = f"key {KEY}; start {KEY[:12]}; end {KEY[-10:]}"
    cleaned = redact(text, KEY)
    assert KEY[3:] not in cleaned and KEY[:12] not in cleaned and KEY[-10:] not in cleaned
    assert REDACTED in cleaned


def test_openai_masked_echo_is_hidden():
    message = ("Incorrect API key provided: sk-proj-****************WxYz. You can find your API "
               "key at https://platform.openai.com/account/api-keys.")
    cleaned = redact(message, KEY)
    assert "WxYz" not in cleaned and "sk-proj" not in cleaned
    assert cleaned.startswith("Incorrect API key provided: [redacted]")
    assert "platform.openai.com" in cleaned


def test_keys_of_other_shapes_quoted_by_the_api_are_hidden_without_knowing_them():
    cleaned = redact("Incorrect API key provided: gw-12ab****9f3e. Check it.")
    assert "gw-12ab" not in cleaned and "9f3e" not in cleaned


def test_ordinary_text_is_left_alone():
    text = "Your request was rejected as a result of our safety system (risk-free, 4000 chars)."
    assert redact(text, KEY) == text


def test_log_filter_hides_key_shapes_in_messages_and_tracebacks():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "sent %s", (KEY,), None)
    RedactingFilter().filter(record)
    assert KEY not in record.getMessage()
    try:
        raise ValueError(f"header value {KEY}")
    except ValueError as exc:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), (
            type(exc), exc, exc.__traceback__))
    RedactingFilter().filter(record)
    assert KEY not in logging.Formatter().format(record)
