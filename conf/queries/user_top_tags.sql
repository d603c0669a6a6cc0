-- One user's profile on a published date: the tags by rank, with their names and scores.
-- :user       string                   the user id
-- :date       published_date = latest  a published date (default: the latest)
-- :objective  objective = all          ctr, cvr, ctr_x_cvr, or all
SELECT p.dt, p.user_id, p.objective, p.rank, p.tag_id, t.tag_name, t.category, p.score, p.model_version
FROM user_tag_profiles p
LEFT JOIN tags t ON t.dt = p.dt AND t.tag_id = p.tag_id
WHERE p.dt = :date
  AND p.user_id = :user
  AND (:objective = 'all' OR p.objective = :objective)
ORDER BY p.objective, p.rank, p.tag_id
