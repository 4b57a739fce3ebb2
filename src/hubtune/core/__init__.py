"""The ground floor: records, dataset meta-features, units and errors; imports nothing else of hubtune."""
