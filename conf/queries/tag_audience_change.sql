-- How many users have a tag in their top max_rank on a published date, how many had it on
-- the previous published date, and the difference (previous_* are NULL on the first date).
-- :tag            tag                        the tag id
-- :date           published_date = latest    a published date (default: the latest)
-- :previous_date  published_date = previous  compare with (default: the published date before :date)
-- :max_rank       positive_int = 5           count a user when the tag's rank <= max_rank
-- :objective      objective = ctr            ctr, cvr or ctr_x_cvr
SELECT :tag AS tag_id,
       :objective AS objective,
       :max_rank AS max_rank,
       :date AS dt,
       COUNT(DISTINCT CASE WHEN p.dt = :date THEN p.user_id END) AS users,
       :previous_date AS previous_dt,
       CASE WHEN :previous_date IS NULL THEN NULL
            ELSE COUNT(DISTINCT CASE WHEN p.dt = :previous_date THEN p.user_id END) END AS previous_users,
       CASE WHEN :previous_date IS NULL THEN NULL
            ELSE COUNT(DISTINCT CASE WHEN p.dt = :date THEN p.user_id END)
                 - COUNT(DISTINCT CASE WHEN p.dt = :previous_date THEN p.user_id END) END AS difference
FROM user_tag_profiles p
WHERE p.dt IN (:date, :previous_date)
  AND p.tag_id = :tag
  AND p.objective = :objective
  AND p.rank <= :max_rank
