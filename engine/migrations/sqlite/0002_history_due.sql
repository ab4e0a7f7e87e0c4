-- The instant a timer was due, on the history lines its application wrote
-- (their `at` is when it was applied).
ALTER TABLE history ADD COLUMN due INTEGER;
