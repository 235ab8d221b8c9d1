"""``synthmed serve``: the site's web catalogue and what it serves to downstream sites."""
