"""The visible limit-order book that a LOBSTER message file reveals, for its best bid/offer.

Only orders whose submission is in the file are known. Two gaps follow (README.md):
- orders resting before the file starts (pre-open) are unknown until a cancel or an
  execution names them; the book never learns how much of them is left, so they stay out;
- a level-N file only carries messages that touch the N best levels, so an order placed
  deeper and later reaching the top, or cancelled while deeper, leaves no trace.
An order the book holds may therefore be gone in reality (stale). Messages carry evidence
against stale orders, applied by `clear_stale_for` before the message is applied:
- a new limit order never crosses the book (a marketable one would show up as
  executions), so before a buy at p no ask is at or below p (and vice versa);
- an execution of a visible resting sell at p means p was the best ask, and no bid was at
  or above p (and vice versa).
Orders contradicting the evidence are dropped, so the rebuilt book is never crossed or
locked.

>>> book = VisibleBook()
>>> book.apply(NEW, 1, BID, 100, 5); book.apply(NEW, 2, ASK, 103, 7)
>>> book.best(BID), book.best(ASK)
(100, 103)
>>> book.clear_stale_for(NEW, BID, 103)  # a buy at 103 rests: the ask at 103 was stale
>>> book.apply(NEW, 3, BID, 103, 1)
>>> book.best(BID), book.best(ASK), book.stale_dropped
(103, None, 1)
"""

from __future__ import annotations

import bisect

# LOBSTER message types (column 2 of a message file)
NEW, PARTIAL_CANCEL, DELETE, EXEC_VISIBLE, EXEC_HIDDEN, CROSS_TRADE, HALT = 1, 2, 3, 4, 5, 6, 7
BID, ASK = 0, 1  # book sides: LOBSTER direction 1 (buy limit order) and -1 (sell)


class VisibleBook:
    """Known visible orders by side and price level; best prices on demand (sorted price lists).

    Prices are LOBSTER integers (dollars x 10000). `unknown_refs` counts cancels and
    executions of orders the book never saw; `stale_dropped` the orders that messages
    proved gone (see the module docstring).
    """

    def __init__(self, depth: int | None = None) -> None:
        self.depth = depth  # levels the file covers (its name's N); None: unbounded
        self.orders: dict[int, list[int]] = {}  # order id -> [side, price, remaining qty]
        self._level_qty: tuple[dict[int, int], dict[int, int]] = ({}, {})
        self._level_ids: tuple[dict[int, set[int]], dict[int, set[int]]] = ({}, {})
        self._prices: tuple[list[int], list[int]] = ([], [])  # ascending; best bid last, best ask first
        self.unknown_refs = 0
        self.stale_dropped = 0
        self.beyond_depth_dropped = 0

    def best(self, side: int) -> int | None:
        """Best price of `side` among the known orders, None when the side is empty."""
        prices = self._prices[side]
        if not prices:
            return None
        return prices[-1] if side == BID else prices[0]

    def apply(self, kind: int, order_id: int, side: int, price: int, qty: int) -> None:
        """Apply one message to the book (executions of hidden orders change nothing)."""
        if kind == NEW:
            if order_id in self.orders:  # a reused id: the newest submission wins
                self._remove(order_id)
            self._add(order_id, side, price, qty)
            self._forget_beyond_depth(side)
        elif kind in (PARTIAL_CANCEL, EXEC_VISIBLE):
            self._reduce(order_id, qty)
        elif kind == DELETE:
            if order_id in self.orders:
                self._remove(order_id)
            else:
                self.unknown_refs += 1

    def clear_stale_for(self, kind: int, side: int, price: int) -> None:
        """Drop the orders that the coming message proves gone (module docstring)."""
        if kind == NEW:
            self._drop_through(1 - side, price)
        elif kind == EXEC_VISIBLE:
            self._drop_through(1 - side, price)
            self._drop_better_than(side, price)

    # ---- internals -------------------------------------------------------------------

    def _add(self, order_id: int, side: int, price: int, qty: int) -> None:
        self.orders[order_id] = [side, price, qty]
        level_qty = self._level_qty[side]
        if price not in level_qty:
            level_qty[price] = 0
            self._level_ids[side][price] = set()
            bisect.insort(self._prices[side], price)
        level_qty[price] += qty
        self._level_ids[side][price].add(order_id)

    def _reduce(self, order_id: int, qty: int) -> None:
        order = self.orders.get(order_id)
        if order is None:
            self.unknown_refs += 1
            return
        side, price, left = order
        if qty >= left:
            self._remove(order_id)
            return
        order[2] = left - qty
        self._level_qty[side][price] -= qty

    def _remove(self, order_id: int) -> None:
        side, price, left = self.orders.pop(order_id)
        ids = self._level_ids[side][price]
        ids.discard(order_id)
        self._level_qty[side][price] -= left
        if not ids:
            del self._level_qty[side][price], self._level_ids[side][price]
            prices = self._prices[side]
            del prices[bisect.bisect_left(prices, price)]

    def _forget_beyond_depth(self, side: int) -> None:
        """Forget the levels past the file's depth: their cancels are not in the file, so
        keeping them would leave stale orders once the price comes back."""
        prices = self._prices[side]
        while self.depth is not None and len(prices) > self.depth:
            worst = prices[0] if side == BID else prices[-1]
            for order_id in list(self._level_ids[side][worst]):
                self._remove(order_id)
                self.beyond_depth_dropped += 1

    def _drop_level(self, side: int, price: int) -> None:
        for order_id in list(self._level_ids[side][price]):
            self._remove(order_id)
            self.stale_dropped += 1

    def _drop_through(self, side: int, price: int) -> None:
        """Drop `side`'s levels at `price` or beyond it toward the other side."""
        while (best := self.best(side)) is not None and (best >= price if side == BID else best <= price):
            self._drop_level(side, best)

    def _drop_better_than(self, side: int, price: int) -> None:
        """Drop `side`'s levels strictly better than `price` (an execution at `price`
        means it was the best visible level of its side)."""
        while (best := self.best(side)) is not None and (best > price if side == BID else best < price):
            self._drop_level(side, best)
