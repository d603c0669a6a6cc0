-- Pairs of tags that share users' top max_rank on a published date: users with both tags,
-- users with each, and the Jaccard index users_both / (users_a + users_b - users_both).
-- :date       published_date = latest  a published date (default: the latest)
-- :objective  objective = ctr          ctr, cvr or ctr_x_cvr
-- :max_rank   positive_int = 5         a user holds a tag when its rank <= max_rank
-- :tag        tag = null               only the pairs with this tag (default: all pairs)
-- :min_users  positive_int = 1         only pairs shared by at least this many users
-- :limit      positive_int = 100       at most this many pairs, most shared first
WITH top_tags AS (
  SELECT DISTINCT p.user_id, p.tag_id
  FROM user_tag_profiles p
  WHERE p.dt = :date AND p.objective = :objective AND p.rank <= :max_rank
),
tag_users AS (
  SELECT tag_id, COUNT(*) AS users FROM top_tags GROUP BY tag_id
),
pairs AS (
  SELECT a.tag_id AS tag_a, b.tag_id AS tag_b, COUNT(*) AS users_both
  FROM top_tags a
  JOIN top_tags b ON b.user_id = a.user_id AND a.tag_id < b.tag_id
  WHERE :tag IS NULL OR a.tag_id = :tag OR b.tag_id = :tag
  GROUP BY a.tag_id, b.tag_id
)
SELECT pairs.tag_a, pairs.tag_b, pairs.users_both, ua.users AS users_a, ub.users AS users_b,
       CAST(pairs.users_both AS DOUBLE) / (ua.users + ub.users - pairs.users_both) AS jaccard
FROM pairs
JOIN tag_users ua ON ua.tag_id = pairs.tag_a
JOIN tag_users ub ON ub.tag_id = pairs.tag_b
WHERE pairs.users_both >= :min_users
ORDER BY pairs.users_both DESC, pairs.tag_a, pairs.tag_b
LIMIT :limit
