"""How much one pass of a list request reads (domain.ports.PromptReader): the store asks before each
read how many items it may take and says after how many it took, so a request reads at most its
budget, whatever the selection holds.

A read's size is DynamoDB's `Limit`, which counts items read, not items that matched the filters:
so a pass that wants `n` more matches asks for `n` scaled by the share of the prompts it has seen
so far that matched (with one added to both, so a pass that saw none matching still grows).
"""

from collections.abc import Callable


class Reads:
    """The reads of one pass over a selection, at most `budget` items in all.

    `lacking`: how many more matching prompts the pass wants (a page: its limit + 1 less what it
    has); None: it wants every item the budget allows (a selection read whole, a count).
    """

    def __init__(self, budget: int, lacking: Callable[[], int] | None = None) -> None:
        self.left = budget  # items not yet granted (a grant's unused part comes back)
        self.read = 0  # items the store read
        self.seen = 0  # prompts the pass examined, and how many of them matched
        self.matched = 0
        self.denied = False  # a read was refused: the store stopped with items maybe unread
        self._lacking = lacking

    def grant(self, reads: int = 1) -> int:
        """The size of each of `reads` reads made together (one per partition); 0, and `denied`,
        once the budget is spent."""
        if self._lacking is None:
            want = self.left
        else:
            want = max(1, -(-self._lacking() * (self.seen + 1) // (self.matched + 1)))
        each = min(-(-want // reads), self.left // reads)
        if each <= 0:
            self.denied = True
            return 0
        self.left -= each * reads
        return each

    def extra(self, items: int = 1) -> int:
        """Up to `items` more for the read about to be made (a look-ahead), if the budget has them."""
        granted = min(items, max(0, self.left))
        self.left -= granted
        return granted

    def took(self, granted: int, read: int) -> None:
        """A read granted `granted` items read `read` (a lookup by key, granted nothing, too)."""
        self.left += granted - read
        self.read += read

    def saw(self, matched: bool) -> None:
        """The pass examined one more prompt."""
        self.seen += 1
        self.matched += int(matched)
