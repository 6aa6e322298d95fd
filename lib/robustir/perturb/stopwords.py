"""The project's English stop-word list, frozen in the library.

The study's stop-word constraint and its naturalizing family use NLTK's English list, which no
registry reachable offline provides (environment.md §8.3). The project therefore freezes its own
copy: the 179 words below were copied verbatim, in order, from ``bm25s.stopwords.STOPWORDS_EN_PLUS``
(bm25s 0.2.x), which has the size and form of NLTK's classic English list (it contains ``ain``,
``mightn't``, ``should've``; not ``he'd`` or ``i'm``). Word-for-word identity with NLTK's list is
unverified; a user with NLTK's corpus can compare with :data:`STOPWORDS_SOURCE` in mind.

Used in the book chapter "Query variations".
"""

STOPWORDS_SOURCE = "bm25s.stopwords.STOPWORDS_EN_PLUS (copied, 179 words)"

#: The English stop-words, lower case, in the source's order.
ENGLISH_STOPWORDS: tuple[str, ...] = (
    "a", "about", "above", "after", "again", "against", "ain", "all", "am", "an", "and", "any",
    "are", "aren", "aren't", "as", "at", "be", "because", "been", "before", "being", "below",
    "between", "both", "but", "by", "can", "couldn", "couldn't", "d", "did", "didn", "didn't",
    "do", "does", "doesn", "doesn't", "doing", "don", "don't", "down", "during", "each", "few",
    "for", "from", "further", "had", "hadn", "hadn't", "has", "hasn", "hasn't", "have", "haven",
    "haven't", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how",
    "i", "if", "in", "into", "is", "isn", "isn't", "it", "it's", "its", "itself", "just", "ll",
    "m", "ma", "me", "mightn", "mightn't", "more", "most", "mustn", "mustn't", "my", "myself",
    "needn", "needn't", "no", "nor", "not", "now", "o", "of", "off", "on", "once", "only", "or",
    "other", "our", "ours", "ourselves", "out", "over", "own", "re", "s", "same", "shan",
    "shan't", "she", "she's", "should", "should've", "shouldn", "shouldn't", "so", "some",
    "such", "t", "than", "that", "that'll", "the", "their", "theirs", "them", "themselves",
    "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until",
    "up", "ve", "very", "was", "wasn", "wasn't", "we", "were", "weren", "weren't", "what",
    "when", "where", "which", "while", "who", "whom", "why", "will", "with", "won", "won't",
    "wouldn", "wouldn't", "y", "you", "you'd", "you'll", "you're", "you've", "your", "yours",
    "yourself", "yourselves",
)

#: The same words as a set, for membership tests.
ENGLISH_STOPWORD_SET: frozenset[str] = frozenset(ENGLISH_STOPWORDS)
