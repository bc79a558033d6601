"""The project's own game: rules, opponents, rendering, and gymnasium/SB3 API conformance."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from pentad_core.errors import ConfigError
from pentad_rl.envs import CONNECT_FOUR_ID, ConnectFourEnv, HeuristicOpponent
from pentad_rl.envs.connect_four import DIFFICULTIES, drop, is_win, winning_moves


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_passes_gymnasium_and_sb3_env_checkers(difficulty):
    gym_check_env(ConnectFourEnv(difficulty=difficulty), skip_render_check=True)
    sb3_check_env(ConnectFourEnv(difficulty=difficulty), warn=True)


def test_registered_id_builds_with_render_modes():
    for mode in ("ansi", "rgb_array"):
        env = gym.make(CONNECT_FOUR_ID, render_mode=mode, difficulty=2)
        gym_check_env(env.unwrapped)
        env.reset(seed=0)
        frame = env.render()
        if mode == "ansi":
            assert frame.splitlines()[-1] == "0 1 2 3 4 5 6" and len(frame.splitlines()) == 7
        else:
            assert frame.shape == (240, 280, 3) and frame.dtype == np.uint8


def test_win_detection_on_hand_built_boards():
    board = np.zeros((6, 7), dtype=np.int8)
    for column in range(3):
        drop(board, column, 1)
    assert winning_moves(board, 1) == [3]  # horizontal, completes 0-3
    row = drop(board, 3, 1)
    assert is_win(board, row, 3)
    diagonal = np.zeros((6, 7), dtype=np.int8)
    for column, height in enumerate([1, 2, 3, 4]):
        for _ in range(height - 1):
            drop(diagonal, column, 2)
        landed = drop(diagonal, column, 1)
    assert is_win(diagonal, landed, 3)


def test_opponent_levels_win_block_and_avoid_traps():
    rng = np.random.default_rng(0)
    board = np.zeros((6, 7), dtype=np.int8)
    for column in (0, 1, 2):
        drop(board, column, 2)  # player 2 threatens column 3
    # Level 1 wins when it can: give player 1 its own threat too.
    for column in (4, 5, 6):
        drop(board, column, 1)
    assert HeuristicOpponent(1, rng)(board, me=1) == 3  # 3 wins for player 1 (3,4,5,6)
    board = np.zeros((6, 7), dtype=np.int8)
    for column in (0, 1, 2):
        drop(board, column, 2)
    assert HeuristicOpponent(2, rng)(board, me=1) == 3  # blocks
    assert all(HeuristicOpponent(1, rng)(board, me=1) in range(7) for _ in range(10))


def test_illegal_move_ends_the_episode_with_a_loss():
    env = ConnectFourEnv(difficulty=0, agent_first=True)
    env.reset(seed=1)
    env.board[:, 0] = 2  # column 0 is full
    _, reward, terminated, _, info = env.step(0)
    assert reward == -1.0 and terminated and info["illegal"]
    assert not env.action_masks()[0]


def test_a_strong_opponent_beats_a_random_one():
    """Level 3 wins most games against level 0 (checks the heuristic is meaningful)."""
    env = ConnectFourEnv(difficulty=3, agent_first=None)
    rng = np.random.default_rng(0)
    outcomes = []
    for episode in range(30):
        env.reset(seed=episode)
        done, reward = False, 0.0
        while not done:
            action = int(rng.choice(np.flatnonzero(env.action_masks())))
            _, reward, done, _, _ = env.step(action)
        outcomes.append(reward)
    assert np.mean(np.array(outcomes) < 0) > 0.8


def test_seeded_resets_are_reproducible():
    first, second = ConnectFourEnv(difficulty=1), ConnectFourEnv(difficulty=1)
    for env in (first, second):
        env.reset(seed=7)
    for action in (3, 3, 2, 4):
        a, b = first.step(action), second.step(action)
        assert np.array_equal(a[0], b[0]) and a[1] == b[1]
        if a[2]:
            break


def test_self_play_opponent_policy_is_used():
    env = ConnectFourEnv(opponent="self", agent_first=True)
    env.set_opponent_policy(lambda observation, mask: 6)
    observation, _ = env.reset(seed=0)
    observation, *_ = env.step(0)
    assert observation[1, 5, 6] == 1.0  # the opponent's disc landed in column 6


def test_bad_settings_raise_config_errors():
    with pytest.raises(ConfigError, match="difficulty"):
        ConnectFourEnv(difficulty=9)
    with pytest.raises(ConfigError, match="render_mode"):
        ConnectFourEnv(render_mode="human")
    with pytest.raises(ConfigError, match="opponent"):
        ConnectFourEnv(opponent="alphazero")
