"""The results database: its schema (:mod:`.schema`), the one layer that reads and writes
it (:mod:`.db`), and its rebuild from run directories (:mod:`.rebuild`)."""
