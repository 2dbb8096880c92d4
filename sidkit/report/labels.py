"""Human labels and one-line meanings of every number the audit shows (HTML report and CLI
summary both read this table; docs/metrics.md has the full definitions).

Keys are report paths with list indices dropped: ``collision.collision_rate``,
``levels.utilization``, ``prefix.fanout_median``, ``popularity.collided_fraction``.
"""

from __future__ import annotations

DOCS = "docs/metrics.md"

# key: (label, meaning with the good/bad cue where one is conventional)
LABELS: dict[str, tuple[str, str]] = {
    # collision block
    "collision.collision_rate": ("collision rate", "(N − U) / N: share of items that share their SID with an earlier item; 0 is collision-free, lower is better"),
    "collision.unique_sid_ratio": ("unique SID ratio", "U / N distinct SIDs per item; 1 is collision-free, higher is better"),
    "collision.collided_item_fraction": ("items in collisions", "share of items whose SID is shared with at least one other item; lower is better"),
    "collision.n_colliding_buckets": ("colliding buckets", "number of SIDs held by two or more items"),
    "collision.max_bucket_size": ("max bucket size", "most items behind one SID; a large value is a 'sink' code"),
    "collision.mean_collided_bucket_size": ("mean colliding bucket size", "average items per SID among the shared SIDs"),
    "collision.gini": ("bucket-size Gini", "inequality of items per SID (0 = all equal); lower is better"),
    "collision.n_distinct_sids": ("distinct SIDs", "U, the number of different SID tuples"),
    # diversity
    "diversity.sid_entropy_ratio": ("SID entropy ratio", "H(full SID) / ln N in [0, 1]; 1 when every SID is unique, higher is better"),
    # hamming
    "hamming.pairs_h0": ("pairs at Hamming 0", "item pairs with identical SIDs (exact); lower is better"),
    "hamming.pairs_h_le1": ("pairs at Hamming ≤ 1", "item pairs whose SIDs differ in at most one level (exact)"),
    "hamming.distribution": ("Hamming distribution", "P(h = k) over all item pairs, k = levels that differ"),
    # per level
    "levels.level": ("level", "position in the SID, 0 = first (coarsest) code"),
    "levels.utilization": ("utilization", "share of the level's codebook used by at least one item; near 1 is good"),
    "levels.dead_codes": ("dead codes", "codes of the level that no item uses; lower is better"),
    "levels.entropy_bits": ("entropy (bits)", "H of the level's code distribution in bits; at most log2 K"),
    "levels.perplexity": ("perplexity", "exp(H): the effective number of codes in use"),
    "levels.normalized_perplexity": ("normalized perplexity", "perplexity / K in (0, 1]; low (< 0.3) means a few 'sink' codes take most items"),
    # prefix
    "prefix.length": ("prefix length", "number of leading SID tokens"),
    "prefix.n_distinct": ("distinct prefixes", "different prefixes of this length in use"),
    "prefix.collision_rate": ("prefix collision rate", "(N − distinct prefixes) / N at this length"),
    "prefix.mean_branching": ("mean branching", "mean distinct children per used prefix one token shorter"),
    "prefix.conditional_entropy_bits": ("H(s_l | prefix) bits", "information the level adds given the prefix; 0 means the level is redundant"),
    "prefix.fanout_min": ("fan-out min", "fewest children of a used prefix one token shorter"),
    "prefix.fanout_median": ("fan-out median", "median children of a used prefix one token shorter"),
    "prefix.fanout_max": ("fan-out max", "most children of a used prefix one token shorter"),
    # semantic
    "semantic.knn_mean_common_prefix": ("k-NN common prefix", "mean shared-prefix length of embedding neighbours; higher is better"),
    "semantic.random_mean_common_prefix": ("random-pair common prefix", "mean shared-prefix length of random pairs (the baseline)"),
    "semantic.locality_gap": ("locality gap", "k-NN minus random common prefix; > 0 means similar items share prefixes, higher is better"),
    "semantic.conflict_collision_rate": ("conflict collisions", "share of colliding pairs that are unrelated items (category paths part above the leaf's parent, or low cosine); lower is better"),
    "semantic.benign_collision_rate": ("benign collisions", "share of colliding pairs that are near duplicates or close items of the same / sibling leaf"),
    "semantic.ambiguous_collision_rate": ("ambiguous collisions", "share of colliding pairs neither benign nor conflict"),
    "semantic.related_collision_rate": ("related collisions", "share of colliding pairs of sibling leaves that are not benign (counted in ambiguous, not conflict)"),
    "semantic.conflict_item_rate": ("items in conflicts", "share of items in at least one conflict pair; lower is better"),
    "semantic.benign_item_rate": ("items in benign collisions", "share of items in at least one benign pair"),
    "semantic.conflict_cos_threshold": ("conflict cosine threshold", "pairs below this cosine (median random-pair cosine + 0.1) are conflicts"),
    "semantic.random_pair_median_cos": ("median random-pair cosine", "typical cosine of two unrelated items"),
    "semantic.knn_prefix_share": ("k-NN prefix share", "share of k-NN pairs sharing a prefix of length l"),
    "semantic.random_prefix_share": ("random prefix share", "share of random pairs sharing a prefix of length l"),
    "semantic.attribute_purity": ("attribute purity", "share of items whose attribute value is the majority one of their prefix group; higher is better"),
    "semantic.knn_recall": ("index recall", "recall of the approximate neighbour index against exact search"),
    # collaborative
    "collaborative.co_interaction_prefix_share": ("co-interaction first-token share", "share of consecutive co-interacted item pairs with the same first token; above random is good"),
    "collaborative.random_prefix_share": ("random first-token share", "the same for random pairs (baseline)"),
    "collaborative.n_pairs": ("co-interaction pairs", "consecutive item pairs of the same user"),
    "collaborative.n_unmatched_interactions": ("unmatched interactions", "interactions whose item is not in the SID table"),
    "collaborative.co_interaction_mean_common_prefix": ("co-interaction common prefix", "mean shared-prefix length of consecutive co-interacted items; above random is good"),
    "collaborative.random_mean_common_prefix": ("random common prefix", "the same for random pairs (baseline)"),
    "collaborative.prefix_share_lift": ("first-token share lift", "co-interaction over random first-token share; > 1 means SIDs follow behaviour"),
    "collaborative.co_interaction_prefix_share_by_length": ("co-interaction prefix share", "per prefix length"),
    "collaborative.random_prefix_share_by_length": ("random prefix share", "per prefix length"),
    # compare
    "compare.n_common_items": ("common items", "items in both tables"),
    "compare.n_only_current": ("only in this table", "items missing from the baseline"),
    "compare.n_only_baseline": ("only in the baseline", "items missing from this table"),
    "compare.levels_differ": ("levels differ", "the two tables have different SID lengths"),
    "compare.unique_sid_ratio_delta": ("unique SID ratio delta", "this table minus the baseline"),
    "compare.sid_entropy_ratio_delta": ("SID entropy ratio delta", "this table minus the baseline"),
    "compare.collided_item_fraction_delta": ("items-in-collisions delta", "this table minus the baseline"),
    "compare.max_bucket_size_delta": ("max bucket size delta", "this table minus the baseline"),
    "compare.baseline_collided_item_fraction": ("baseline items in collisions", "the baseline's collided-item fraction"),
    "compare.baseline_max_bucket_size": ("baseline max bucket size", "the baseline's largest bucket"),
    "compare.baseline_collision_rate": ("baseline collision rate", "the baseline's (N − U) / N"),
    "compare.baseline_unique_sid_ratio": ("baseline unique SID ratio", "the baseline's U / N"),
    "compare.baseline_sid_entropy_ratio": ("baseline SID entropy ratio", "the baseline's H / ln N"),
    "compare.utilization_delta": ("utilization delta", "per level, this table minus the baseline"),
    "compare.churn_rate": ("churn vs baseline", "share of common items whose SID changed; lower is more stable"),
    "compare.collision_rate_delta": ("collision rate delta", "this table's collision rate minus the baseline's"),
    "compare.per_level_changed_fraction": ("changed per level", "share of common items whose code at the level changed"),
    # popularity probe
    "popularity.decile": ("popularity decile", "0 = most interacted 10% of items (head), 9 = least (tail)"),
    "popularity.n_items": ("items", "items in the decile"),
    "popularity.interactions": ("interactions", "interactions of the decile's items"),
    "popularity.collided_fraction": ("in collisions", "share of the decile's items whose SID is shared; head items should be near 0"),
    "popularity.mean_bucket_size": ("mean bucket size", "mean items behind the SID of a decile item (1 = unique)"),
    "popularity.distinct_prefix_ratio": ("distinct prefixes / items", "per prefix length: distinct prefixes among the decile's items over its items; low means the decile is compressed together"),
}


def label(key: str) -> str:
    """The human label of a report key (the key itself when unknown)."""
    return LABELS.get(key, (key.rsplit(".", 1)[-1].replace("_", " "), ""))[0]


def meaning(key: str) -> str:
    """The one-line meaning of a report key ('' when unknown)."""
    return LABELS.get(key, ("", ""))[1]
