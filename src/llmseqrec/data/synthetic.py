"""The embedded default dataset: a seeded, readable shop catalogue and users who drift between
interests. No files, no network.

How it is generated (all from one ``numpy`` generator seeded with ``seed``):

* **Catalogue.** 12 categories, each with 3 sub-categories and its own nouns and adjectives;
  40 brands, each selling in 1-3 categories. Items come in *series* of 2-5 items (same brand,
  same sub-category, "... No. 1", "No. 2", ...), so titles are readable, e.g.
  ``"Nordvik Gentle Face Cream No. 2"``. Each category's items get Zipf-like popularity.
* **Users.** Each user has 1-3 interest categories with Dirichlet weights. Histories have a
  long-tail length distribution (lognormal, clipped to 5..80, median about 8, as in Amazon
  data). Each next item is, in order of precedence: with probability ``p_series`` the next
  item of the series just bought (the sequential signal a sequence model can learn); else,
  with probability ``p_switch``, a jump to another interest (drift, occasionally adopting a
  new interest); else a popularity-weighted item of the current category, preferring the
  current brand (the signal item text carries, through brand and category).
* Timestamps increase by a random gap per step; users appear in id order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmseqrec import paths
from llmseqrec.data import cache as cache_mod
from llmseqrec.data.build import PrepareOptions, RawData, build_dataset, interactions_frame
from llmseqrec.data.dataset import Dataset
from llmseqrec.data.readers.text import text_frame

GENERATOR_VERSION = 1

CATEGORIES = {
    "Skincare": (
        ["Face Cream", "Serum", "Cleanser", "Toner", "Eye Gel"],
        ["Gentle", "Hydrating", "Radiant", "Calming"],
        ["Moisturizers", "Treatments", "Cleansers"],
    ),
    "Hair Care": (
        ["Shampoo", "Conditioner", "Hair Oil", "Styling Gel", "Hair Mask"],
        ["Silky", "Volumizing", "Repair", "Curl"],
        ["Shampoos", "Treatments", "Styling"],
    ),
    "Makeup": (
        ["Lipstick", "Mascara", "Eyeliner", "Foundation", "Blush"],
        ["Matte", "Velvet", "Long-Wear", "Sheer"],
        ["Lips", "Eyes", "Face"],
    ),
    "Kitchen": (
        ["Chef Knife", "Skillet", "Cutting Board", "Saucepan", "Spatula"],
        ["Forged", "Nonstick", "Bamboo", "Cast Iron"],
        ["Cookware", "Cutlery", "Utensils"],
    ),
    "Coffee & Tea": (
        ["Espresso Beans", "Green Tea", "French Press", "Milk Frother", "Pour-Over Kit"],
        ["Dark Roast", "Organic", "Single Origin", "Smooth"],
        ["Coffee", "Tea", "Brewing"],
    ),
    "Outdoor": (
        ["Trail Backpack", "Tent", "Headlamp", "Water Filter", "Sleeping Bag"],
        ["Ultralight", "Rugged", "Waterproof", "Compact"],
        ["Camping", "Hiking", "Lighting"],
    ),
    "Fitness": (
        ["Yoga Mat", "Dumbbell Set", "Resistance Band", "Foam Roller", "Jump Rope"],
        ["Pro", "Adjustable", "Grip", "Eco"],
        ["Yoga", "Strength", "Recovery"],
    ),
    "Books": (
        ["Mystery Novel", "Cookbook", "Travel Guide", "Poetry Collection", "Sci-Fi Saga"],
        ["Illustrated", "Classic", "Bestselling", "Annotated"],
        ["Fiction", "Nonfiction", "Reference"],
    ),
    "Office": (
        ["Notebook", "Gel Pen Set", "Desk Organizer", "Stapler", "Sticky Notes"],
        ["Dotted", "Premium", "Colorful", "Minimal"],
        ["Paper", "Writing", "Desk"],
    ),
    "Pets": (
        ["Dog Food", "Cat Toy", "Pet Bed", "Leash", "Chew Treats"],
        ["Grain-Free", "Durable", "Cozy", "Natural"],
        ["Dogs", "Cats", "Accessories"],
    ),
    "Audio": (
        ["Headphones", "Bluetooth Speaker", "Earbuds", "Turntable", "Microphone"],
        ["Wireless", "Noise-Cancelling", "Studio", "Portable"],
        ["Headphones", "Speakers", "Recording"],
    ),
    "Garden": (
        ["Seed Kit", "Pruning Shears", "Planter", "Watering Can", "Compost Bin"],
        ["Heirloom", "Stainless", "Self-Watering", "Ceramic"],
        ["Seeds", "Tools", "Planters"],
    ),
}
BRAND_SYLLABLES = [
    "Nord",
    "Vik",
    "Alba",
    "Lumi",
    "Terra",
    "Soli",
    "Kora",
    "Bel",
    "Rivo",
    "Mira",
    "Osto",
    "Pax",
    "Quin",
    "Zeta",
    "Hale",
    "Ember",
]


def _brands(rng: np.random.Generator, n: int) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        a, b = rng.choice(len(BRAND_SYLLABLES), 2, replace=False)
        name = BRAND_SYLLABLES[a] + BRAND_SYLLABLES[b].lower()
        if name not in names:
            names.append(name)
    return names


def generate(seed: int = 0, n_users: int = 3000, n_items: int = 1500) -> RawData:
    rng = np.random.default_rng(seed)
    categories = list(CATEGORIES)
    brands = _brands(rng, 40)
    brand_cats = {
        b: rng.choice(len(categories), rng.integers(1, 4), replace=False).tolist() for b in brands
    }
    cat_brands = {
        c: [b for b in brands if c in brand_cats[b]] or [brands[c % len(brands)]]
        for c in range(len(categories))
    }

    titles, item_brand, item_cat, item_sub, descriptions, series_next = [], [], [], [], [], []
    per_cat = n_items // len(categories)
    for c, cat in enumerate(categories):
        nouns, adjectives, subs = CATEGORIES[cat]
        made = 0
        while made < per_cat:
            size = min(int(rng.integers(2, 6)), per_cat - made)
            brand = cat_brands[c][int(rng.integers(len(cat_brands[c])))]
            noun = nouns[int(rng.integers(len(nouns)))]
            adjective = adjectives[int(rng.integers(len(adjectives)))]
            sub = int(rng.integers(len(subs)))
            start = len(titles)
            for k in range(size):
                titles.append(f"{brand} {adjective} {noun} No. {k + 1}")
                item_brand.append(brand)
                item_cat.append(c)
                item_sub.append(sub)
                descriptions.append(
                    f"A {adjective.lower()} {noun.lower()} from {brand}, part {k + 1} of a {size}-piece line."
                )
                series_next.append(start + k + 1 if k + 1 < size else -1)
            made += size
    n = len(titles)
    item_cat_arr = np.array(item_cat)
    item_brand_arr = np.array(item_brand)
    popularity = np.empty(n)
    cat_items = {}
    for c in range(len(categories)):
        members = np.flatnonzero(item_cat_arr == c)
        ranks = rng.permutation(len(members)) + 1
        popularity[members] = 1.0 / ranks**0.9
        cat_items[c] = members

    users, items, stamps = [], [], []
    lengths = np.clip(np.round(rng.lognormal(mean=2.0, sigma=0.6, size=n_users)), 5, 80).astype(int)
    for u in range(n_users):
        k = int(rng.integers(1, 4))
        interests = list(rng.choice(len(categories), k, replace=False))
        weights = rng.dirichlet(np.ones(k))
        current_cat = interests[int(rng.choice(k, p=weights))]
        previous = -1
        t = int(1_600_000_000 + rng.integers(0, 10_000_000))
        chosen: list[int] = []
        for _ in range(lengths[u]):
            if previous >= 0 and series_next[previous] >= 0 and rng.random() < 0.45:
                item = series_next[previous]
            else:
                if rng.random() < 0.2:
                    if rng.random() < 0.1:  # slow drift: adopt a new interest
                        interests[int(rng.integers(len(interests)))] = int(
                            rng.integers(len(categories))
                        )
                    current_cat = interests[int(rng.choice(len(interests), p=weights))]
                members = cat_items[current_cat]
                p = popularity[members].copy()
                if previous >= 0:
                    p[item_brand_arr[members] == item_brand_arr[previous]] *= 4.0
                p[np.isin(members, chosen[-10:])] *= 0.05
                item = int(rng.choice(members, p=p / p.sum()))
            chosen.append(item)
            previous = item
            current_cat = item_cat[item]
            t += int(rng.integers(3_600, 30 * 86_400))
            users.append(str(u + 1))
            items.append(str(item + 1))
            stamps.append(t)
    text = text_frame(
        {
            "item": [str(i + 1) for i in range(n)],
            "title": titles,
            "brand": item_brand,
            "categories": [
                [categories[item_cat[i]], CATEGORIES[categories[item_cat[i]]][2][item_sub[i]]]
                for i in range(n)
            ],
            "description": descriptions,
        }
    )
    return RawData(interactions=interactions_frame(users, items, stamps), item_text=text)


def prepare_synthetic(
    cache: Path | None = None, seed: int = 0, n_users: int = 3000, n_items: int = 1500
) -> Dataset:
    """Build (or reload) the embedded dataset under the name ``synthetic``."""
    cache = Path(cache) if cache is not None else paths.cache_root()
    params = {"generator": GENERATOR_VERSION, "seed": seed, "n_users": n_users, "n_items": n_items}
    key = cache_mod.cache_key({"synthetic": params})
    directory = cache_mod.dataset_root(cache, "synthetic") / key
    if (directory / "meta.json").exists():
        dataset = cache_mod.load_dataset(directory)
    else:
        options = PrepareOptions()
        dataset = build_dataset(
            generate(seed, n_users, n_items),
            name="synthetic",
            options=options,
            source={"format": "synthetic", **params},
        )
        dataset.metadata["cache_key"] = key
        cache_mod.save_dataset(dataset, directory)
    cache_mod.set_current(cache, "synthetic", key)
    return dataset
