-- What changed since the previous published date, per tag: users holding the tag in their top
-- max_rank then and now, users who gained it (in now, not then; new users included) and users
-- who lost it (in then, not now; users without a profile now included). Most changed first.
-- :date           published_date = latest    a published date (default: the latest)
-- :previous_date  published_date = previous  compare with (default: the published date before :date)
-- :objective      objective = ctr            ctr, cvr or ctr_x_cvr
-- :max_rank       positive_int = 5           a user holds a tag when its rank <= max_rank
WITH top_tags AS (
  SELECT DISTINCT p.dt, p.user_id, p.tag_id
  FROM user_tag_profiles p
  WHERE p.dt IN (:date, :previous_date) AND p.objective = :objective AND p.rank <= :max_rank
),
held AS (
  SELECT user_id, tag_id,
         MAX(CASE WHEN dt = :date THEN 1 ELSE 0 END) AS now_held,
         MAX(CASE WHEN dt = :previous_date THEN 1 ELSE 0 END) AS then_held
  FROM top_tags
  GROUP BY user_id, tag_id
),
per_tag AS (
  SELECT tag_id,
         COUNT(CASE WHEN then_held = 1 THEN 1 END) AS users_previous,
         COUNT(CASE WHEN now_held = 1 THEN 1 END) AS users,
         COUNT(CASE WHEN now_held = 1 AND then_held = 0 THEN 1 END) AS gained,
         COUNT(CASE WHEN now_held = 0 AND then_held = 1 THEN 1 END) AS lost
  FROM held
  GROUP BY tag_id
)
SELECT :date AS dt, :previous_date AS previous_dt, c.tag_id, c.users_previous, c.users,
       c.gained, c.lost, c.users - c.users_previous AS difference
FROM per_tag c
ORDER BY c.gained + c.lost DESC, c.tag_id
