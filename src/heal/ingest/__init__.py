"""From alert notifications to incidents and new actions, in one transaction."""
