"""Sources of truth for which VTXOs are still the user's: exitd follows a bark wallet (barkd) over REST."""
