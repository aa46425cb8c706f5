"""What only the book shows: one module per notebook (figures, display tables, glued numbers,
findings text, the widget explorer) plus :mod:`.common` (colours, image tiles, CI text, the
book's figure style, glue). The engine never imports this package; notebooks import it."""
