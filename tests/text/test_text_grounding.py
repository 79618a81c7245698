from llmseqrec.text.grounding import (
    Grounder,
    GroundingStats,
    ground,
    normalise_title,
    parse_json_answer,
)

TITLES = [
    "",
    "OPI Nail Lacquer, Red",
    "Crème Brûlée Body Lotion",
    "3 Pack Nail Files",
    "Rose Shampoo",
    "Blue Nail Polish",
]


def test_index_exact_and_normalised_titles():
    stats = GroundingStats()
    candidates = [1, 2, 3, 5]
    assert ground(
        "[2]\n3 Pack Nail Files\ncreme brulee body lotion!", candidates, TITLES, stats=stats
    ) == [2, 3]
    assert stats.by_index == 1 and stats.by_exact_title == 1 and stats.by_normalised_title == 1
    assert stats.duplicates == 1 and stats.fallbacks == 1
    assert ground("4, 1", candidates, TITLES) == [5, 1]
    assert ground('{"item": 3}', candidates, TITLES) == [3]
    assert ground("2. OPI Nail Lacquer, Red", candidates, TITLES) == [1]  # a title beats its number


def test_never_returns_items_outside_the_candidates(minilm):
    stats = GroundingStats()
    grounder = Grounder(TITLES, minilm, stats=stats, min_similarity=0.2)
    candidates = [2, 3]
    picked = grounder.ground("Rose Shampoo\n7\nblue nail polish", candidates)
    assert set(picked) <= set(candidates)
    assert 4 not in picked and 5 not in picked
    assert stats.invalid_index == 1 and stats.by_embedding >= 1


def test_failures_are_counted_without_an_encoder():
    stats = GroundingStats()
    assert ground("no idea, sorry", [1, 2], TITLES, stats=stats, expect_json=True) == []
    assert stats.failed == 1 and stats.empty_answers == 1 and stats.non_json == 1
    assert ground("", [1, 2], TITLES, stats=stats) == []
    assert stats.empty_answers == 2


def test_max_items_and_helpers():
    assert ground('{"items": [1, 2, 3]}', [1, 2, 3], TITLES, max_items=2) == [1, 2]
    assert parse_json_answer('Here you go: {"a": [1]} hope it helps') == {"a": [1]}
    assert parse_json_answer("nothing") is None
    assert normalise_title("  Crème—Brûlée!! ") == "creme brulee"
