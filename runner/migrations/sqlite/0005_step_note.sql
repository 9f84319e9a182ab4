-- What the results table adds to a step's own outcome, e.g. that an earlier attempt, cut short,
-- made the change a later attempt then found done.
ALTER TABLE step_results ADD COLUMN note TEXT;
