"""Connect Four as a single-agent gymnasium environment against a built-in opponent.

The agent drops a disc into one of 7 columns of a 6x7 board; the opponent answers at once, so one
environment step is one full move pair. The opponent is a heuristic of adjustable difficulty, or a
frozen copy of a trained policy (self-play).

Observation: ``float32`` array of shape ``(2, 6, 7)`` with values in {0, 1}; plane 0 holds the agent's
discs, plane 1 the opponent's (row 0 is the top row). The board is always seen from the side of the
player to move, so the same policy can play either colour.

Rewards: +1 for a win, -1 for a loss or an illegal move (a full column, which also ends the episode),
0 for a draw and for every other step. ``info["is_success"]`` is True on a win.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pentad_core.errors import ConfigError
from pentad_rl.envs.registry import CONNECT_FOUR_ID, register_env

ROWS, COLUMNS = 6, 7
#: Columns ordered from the centre outwards: central discs take part in more lines of four.
CENTRE_FIRST = (3, 2, 4, 1, 5, 0, 6)
#: Difficulty levels of the heuristic opponent (see :class:`HeuristicOpponent`).
DIFFICULTIES = (0, 1, 2, 3)

OpponentPolicy = Callable[[np.ndarray, np.ndarray], int]
"""Maps ``(observation (2, 6, 7), legal-move mask (7,))`` from the opponent's side to a column."""


def legal_moves(board: np.ndarray) -> np.ndarray:
    """Boolean mask ``(7,)`` of the columns that still have room."""
    return board[0] == 0


def drop(board: np.ndarray, column: int, player: int) -> int:
    """Drop a disc of ``player`` (1 or 2) into ``column`` in place; returns the row it lands in."""
    empty_rows = np.flatnonzero(board[:, column] == 0)
    row = int(empty_rows[-1])
    board[row, column] = player
    return row


def is_win(board: np.ndarray, row: int, column: int) -> bool:
    """Whether the disc at ``(row, column)`` completes a line of four."""
    player = board[row, column]
    for d_row, d_col in ((0, 1), (1, 0), (1, 1), (1, -1)):
        count = 1
        for sign in (1, -1):
            r, c = row + sign * d_row, column + sign * d_col
            while 0 <= r < ROWS and 0 <= c < COLUMNS and board[r, c] == player:
                count += 1
                r, c = r + sign * d_row, c + sign * d_col
        if count >= 4:
            return True
    return False


def winning_moves(board: np.ndarray, player: int) -> list[int]:
    """Columns where ``player`` would win at once."""
    wins = []
    for column in np.flatnonzero(legal_moves(board)):
        trial = board.copy()
        row = drop(trial, int(column), player)
        if is_win(trial, row, int(column)):
            wins.append(int(column))
    return wins


class HeuristicOpponent:
    """A rule-based Connect Four player.

    Difficulty levels:
        0: a uniformly random legal move.
        1: wins at once when it can, else random.
        2: as 1, and blocks the other player's immediate win; prefers central columns.
        3: as 2, and avoids moves that let the other player win on the next move.

    Args:
        difficulty: One of 0, 1, 2, 3.
        rng: Random generator for tie-breaking (seeded by the environment).
    """

    def __init__(self, difficulty: int, rng: np.random.Generator) -> None:
        if difficulty not in DIFFICULTIES:
            raise ConfigError(f"ConnectFour difficulty {difficulty!r} must be one of {DIFFICULTIES}.")
        self.difficulty = difficulty
        self.rng = rng

    def __call__(self, board: np.ndarray, me: int) -> int:
        """Pick a column for ``me`` (1 or 2) on the absolute ``board`` of shape (6, 7)."""
        other = 3 - me
        legal = [int(c) for c in np.flatnonzero(legal_moves(board))]
        if self.difficulty >= 1:
            wins = winning_moves(board, me)
            if wins:
                return wins[0]
        if self.difficulty >= 2:
            threats = winning_moves(board, other)
            if threats:
                return threats[0]
        if self.difficulty >= 3:
            safe = []
            for column in legal:
                trial = board.copy()
                drop(trial, column, me)
                if not winning_moves(trial, other):
                    safe.append(column)
            legal = safe or legal
        if self.difficulty >= 2:
            # Random among the most central of the candidate columns, with some spread.
            ranked = sorted(legal, key=CENTRE_FIRST.index)
            top = ranked[: max(2, len(ranked) // 2)]
            return int(self.rng.choice(top))
        return int(self.rng.choice(legal))


# 21 moves of the agent fill the board at most; the step cap only guards against bugs.
@register_env(CONNECT_FOUR_ID, "pentad's Connect Four against a heuristic opponent (difficulty 0-3)", 42)
class ConnectFourEnv(gym.Env):
    """Connect Four against a heuristic opponent or a frozen policy (self-play).

    Args:
        difficulty: Heuristic opponent level, 0 (random) to 3 (blocks and looks one move ahead).
        agent_first: True: the agent always opens; False: the opponent always opens; None: a coin flip
            at every reset.
        opponent: ``"heuristic"`` or ``"self"``. With ``"self"`` the opponent is the policy set with
            :meth:`set_opponent_policy` or :meth:`set_opponent_agent` (the heuristic plays until
            one is set).
        render_mode: ``"ansi"`` (text board) or ``"rgb_array"`` (``uint8`` image of shape (240, 280, 3)).
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 2}

    def __init__(
        self,
        difficulty: int = 1,
        agent_first: bool | None = None,
        opponent: str = "heuristic",
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(
                f"ConnectFour render_mode {render_mode!r} is not supported; use one of "
                f"{', '.join(self.metadata['render_modes'])}."
            )
        if opponent not in ("heuristic", "self"):
            raise ConfigError(f"ConnectFour opponent {opponent!r} must be 'heuristic' or 'self'.")
        if difficulty not in DIFFICULTIES:
            raise ConfigError(f"ConnectFour difficulty {difficulty!r} must be one of {DIFFICULTIES}.")
        self.difficulty = difficulty
        self.agent_first = agent_first
        self.opponent_kind = opponent
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 1.0, shape=(2, ROWS, COLUMNS), dtype=np.float32)
        self.action_space = spaces.Discrete(COLUMNS)
        self.board = np.zeros((ROWS, COLUMNS), dtype=np.int8)
        self.agent = 1
        self._heuristic = HeuristicOpponent(difficulty, np.random.default_rng())
        self._opponent_policy: OpponentPolicy | None = None

    # -- opponents ---------------------------------------------------------------------------------
    def set_opponent_policy(self, policy: OpponentPolicy | None) -> None:
        """Use ``policy`` as the opponent (self-play); ``None`` returns to the heuristic."""
        self._opponent_policy = policy

    def set_opponent_agent(self, policy: Any) -> None:
        """Play against a frozen stable-baselines3 policy (self-play).

        Its action probabilities, restricted to the legal columns, are sampled with this env's own
        ``np_random`` (a value-based policy such as DQN's plays its greedy legal column), so an episode
        depends only on the env's seed and the agent's actions: a resumed run replays it exactly.

        Args:
            policy: An SB3 policy (``model.policy``, copied and frozen by the caller); nothing is loaded from a file.
        """
        import torch

        def opponent(observation: np.ndarray, mask: np.ndarray) -> int:
            with torch.no_grad():
                batch = torch.as_tensor(observation[None], device=policy.device)
                try:
                    probabilities = policy.get_distribution(batch).distribution.probs[0].cpu().numpy()
                except (AttributeError, TypeError):  # no action distribution of its own (DQN, LSTM)
                    probabilities = np.eye(COLUMNS)[int(policy.predict(observation[None], deterministic=True)[0][0])]
            weights = np.asarray(probabilities, dtype=np.float64) * mask
            if weights.sum() <= 0:
                weights = mask.astype(np.float64)
            return int(self.np_random.choice(COLUMNS, p=weights / weights.sum()))

        self._opponent_policy = opponent

    def _opponent_move(self) -> int:
        opponent = 3 - self.agent
        if self.opponent_kind == "self" and self._opponent_policy is not None:
            return self._opponent_policy(self._observation(opponent), legal_moves(self.board))
        return self._heuristic(self.board, opponent)

    # -- gymnasium API -----------------------------------------------------------------------------
    def _observation(self, player: int) -> np.ndarray:
        return np.stack([self.board == player, self.board == 3 - player]).astype(np.float32)

    def action_masks(self) -> np.ndarray:
        """Legal columns, for sb3-contrib's MaskablePPO."""
        return legal_moves(self.board)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._heuristic.rng = self.np_random
        self.board[:] = 0
        first = self.agent_first if self.agent_first is not None else bool(self.np_random.integers(2))
        self.agent = 1 if first else 2
        if not first:
            drop(self.board, self._opponent_move(), 3 - self.agent)
        return self._observation(self.agent), {"action_mask": legal_moves(self.board)}

    def step(self, action):
        column = int(action)
        info: dict[str, Any] = {"is_success": False, "illegal": False}
        if not legal_moves(self.board)[column]:
            info["illegal"] = True
            return self._observation(self.agent), -1.0, True, False, info
        row = drop(self.board, column, self.agent)
        if is_win(self.board, row, column):
            info["is_success"] = True
            return self._observation(self.agent), 1.0, True, False, info
        if not legal_moves(self.board).any():
            return self._observation(self.agent), 0.0, True, False, info
        opponent = 3 - self.agent
        column = self._opponent_move()
        row = drop(self.board, column, opponent)
        if is_win(self.board, row, column):
            return self._observation(self.agent), -1.0, True, False, info
        terminated = not legal_moves(self.board).any()
        info["action_mask"] = legal_moves(self.board)
        return self._observation(self.agent), 0.0, terminated, False, info

    def render(self):
        if self.render_mode == "ansi":
            return self._render_text()
        if self.render_mode == "rgb_array":
            return self._render_image()
        return None

    def _render_text(self) -> str:
        symbols = {0: ".", self.agent: "X", 3 - self.agent: "O"}
        lines = [" ".join(symbols[int(v)] for v in row) for row in self.board]
        lines.append(" ".join(str(c) for c in range(COLUMNS)))
        return "\n".join(lines) + "\n"

    def _render_image(self, cell: int = 40) -> np.ndarray:
        height, width = ROWS * cell, COLUMNS * cell
        image = np.empty((height, width, 3), dtype=np.uint8)
        image[:] = (30, 80, 200)  # board blue
        colours = {0: (235, 235, 235), self.agent: (220, 40, 40), 3 - self.agent: (245, 210, 40)}
        y, x = np.mgrid[0:cell, 0:cell]
        disc = (y - cell / 2 + 0.5) ** 2 + (x - cell / 2 + 0.5) ** 2 <= (cell * 0.4) ** 2
        for r in range(ROWS):
            for c in range(COLUMNS):
                patch = image[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell]
                patch[disc] = colours[int(self.board[r, c])]
        return image
