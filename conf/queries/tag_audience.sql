-- Audience size per tag on a published date: distinct users whose profile holds the tag at
-- rank <= max_rank and with score >= min_score (both conditions when both are given).
-- Every tag of that date's profiles gets a row (0 when nobody qualifies), or only :tag.
-- :tag        tag = null               one tag id (default: every tag)
-- :date       published_date = latest  a published date (default: the latest)
-- :objective  objective = ctr          ctr, cvr or ctr_x_cvr
-- :max_rank   positive_int = null      count a user when rank <= max_rank (default: any rank)
-- :min_score  float = null             count a user when score >= min_score (default: any score)
WITH qualified AS (
  SELECT p.tag_id, p.user_id
  FROM user_tag_profiles p
  WHERE p.dt = :date
    AND p.objective = :objective
    AND (:max_rank IS NULL OR p.rank <= :max_rank)
    AND (:min_score IS NULL OR p.score >= :min_score)
),
wanted AS (
  SELECT DISTINCT p.tag_id FROM user_tag_profiles p WHERE p.dt = :date AND :tag IS NULL
  UNION ALL
  SELECT :tag AS tag_id FROM (SELECT 1 AS one) one_row WHERE :tag IS NOT NULL
)
SELECT :date AS dt, :objective AS objective, w.tag_id, COUNT(DISTINCT q.user_id) AS users
FROM wanted w
LEFT JOIN qualified q ON q.tag_id = w.tag_id
GROUP BY w.tag_id
ORDER BY users DESC, w.tag_id
