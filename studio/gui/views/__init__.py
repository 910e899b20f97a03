"""The studio's panels and dialogs (each observes the document; edits go through commands)."""
