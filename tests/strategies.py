"""Hypothesis strategies for text that tokenizers must round-trip."""

from hypothesis import strategies as st

# U+2581 is sentencepiece's own whitespace symbol: text holding it decodes with a space (Meta's model too).
ANY_TEXT = st.text(st.characters(exclude_characters="\u2581", exclude_categories=("Cs",)))
CODE_BITS = [" ", "  ", "\t", "\n", "\r\n", "x", "1", "(", "def", "☺", "é", "日", "🤖"]
CODE_TEXT = st.lists(st.sampled_from(CODE_BITS)).map("".join)  # whitespace-heavy, like code
TEXT = ANY_TEXT | CODE_TEXT
