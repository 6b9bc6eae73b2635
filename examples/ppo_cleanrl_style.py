"""PPO for the halting decision in one file, in the style of CleanRL's ``ppo.py``, on the
batched vector env (``gym.make_vec``: one core forward for all envs per step).

    python examples/ppo_cleanrl_style.py --total-timesteps 100000 --num-envs 64
    tensorboard --logdir runs

What differs from CleanRL's ``ppo.py`` (which runs unchanged but logs no episodes on
Gymnasium 1.x):

1. The envs are ``gym.make_vec(env_id, num_envs=N)`` wrapped in the *vector*
   ``gymnasium.wrappers.vector.RecordEpisodeStatistics``, not a ``SyncVectorEnv`` of single
   envs each wrapped in its own ``RecordEpisodeStatistics``.
2. Finished episodes are read from ``infos["episode"]`` under the mask ``infos["_episode"]``;
   CleanRL's ``for info in infos["final_info"]`` loop predates Gymnasium 1.x.
3. Autoreset stays same-step (the env's default): the step that ends an episode returns the
   next episode's first observation, so every stored transition is real. Under next-step
   autoreset (``autoreset_mode="NextStep"``) the step after an episode's end is a reset with
   reward 0 whose action is ignored, a junk transition PPO would have to mask out.

Training reads the core's ``train`` puzzles; the final comparison is on ``val`` (choose
settings there; score on ``test`` with ``hrm-rl halt eval`` once).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from torch.distributions import Categorical
from torch.utils.tensorboard import SummaryWriter

import hrm_rl  # noqa: F401  (registers the envs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-id", default="HRM-Sudoku-v0")
    p.add_argument("--checkpoint", default=None, help="a bundled core or a checkpoint folder")
    p.add_argument("--step-cost", type=float, default=0.01)
    p.add_argument("--total-timesteps", type=int, default=100_000)
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--num-steps", type=int, default=16, help="steps per env per rollout")
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--gamma", type=float, default=1.0, help="episodic: no discount")
    p.add_argument("--gae-lambda", type=float, default=0.95)
    p.add_argument("--num-minibatches", type=int, default=4)
    p.add_argument("--update-epochs", type=int, default=4)
    p.add_argument("--clip-coef", type=float, default=0.2)
    p.add_argument("--ent-coef", type=float, default=0.01)
    p.add_argument("--vf-coef", type=float, default=0.5)
    p.add_argument("--max-grad-norm", type=float, default=0.5)
    p.add_argument("--eval-episodes", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--run-name", default=None)
    return p.parse_args(argv)


class Agent(nn.Module):
    """Actor-critic MLP over the env's feature vector; actions: 0 continue, 1 halt."""

    def __init__(self, n_obs: int, n_actions: int = 2, hidden: int = 64) -> None:
        super().__init__()

        def mlp(out: int, std: float) -> nn.Sequential:
            layers = [nn.Linear(n_obs, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                      nn.Linear(hidden, out)]
            for layer in layers[::2]:
                nn.init.orthogonal_(layer.weight, np.sqrt(2))
                nn.init.zeros_(layer.bias)
            nn.init.orthogonal_(layers[-1].weight, std)
            return nn.Sequential(*layers)

        self.critic, self.actor = mlp(1, 1.0), mlp(n_actions, 0.01)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def act(self, obs: torch.Tensor, action: torch.Tensor | None = None):
        dist = Categorical(logits=self.actor(obs))
        action = dist.sample() if action is None else action
        return action, dist.log_prob(action), dist.entropy(), self.value(obs)


def make_envs(args: argparse.Namespace, num_envs: int, split: str) -> gym.vector.VectorEnv:
    kwargs = {"step_cost": args.step_cost, "split": split}
    if args.checkpoint:
        kwargs["checkpoint"] = args.checkpoint
    envs = gym.make_vec(args.env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **kwargs)
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def evaluate(agent: Agent, args: argparse.Namespace) -> dict[str, float]:
    """Greedy policy on ``eval_episodes`` episodes of the ``val`` split."""
    envs = make_envs(args, min(args.num_envs, args.eval_episodes), "val")
    obs, _ = envs.reset(seed=args.seed + 1)
    returns, lengths, solved = [], [], []
    while len(returns) < args.eval_episodes:
        with torch.no_grad():
            action = agent.actor(torch.as_tensor(obs)).argmax(-1).numpy()
        obs, _, _, _, infos = envs.step(action)
        done = infos.get("_episode", np.zeros(envs.num_envs, bool))
        returns += infos["episode"]["r"][done].tolist() if done.any() else []
        lengths += infos["episode"]["l"][done].tolist() if done.any() else []
        if done.any():  # same-step autoreset: the ending step's info is in final_info
            solved += infos["final_info"]["is_success"][done].tolist()
    envs.close()
    n = args.eval_episodes
    return {"return": float(np.mean(returns[:n])), "segments": float(np.mean(lengths[:n])),
            "accuracy": float(np.mean(solved[:n]))}


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run_name = args.run_name or f"{args.env_id}__ppo_cleanrl_style__{args.seed}__{int(time.time())}"
    writer = SummaryWriter(f"runs/{run_name}")
    writer.add_text("hyperparameters", "\n".join(f"|{k}|{v}|" for k, v in vars(args).items()))
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    envs = make_envs(args, args.num_envs, "train")
    n_obs = int(np.prod(envs.single_observation_space.shape))
    agent = Agent(n_obs, int(envs.single_action_space.n))
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)

    shape = (args.num_steps, args.num_envs)
    obs_buf = torch.zeros(shape + (n_obs,))
    actions, logprobs, rewards, dones, values = (torch.zeros(shape) for _ in range(5))
    batch_size = args.num_envs * args.num_steps
    minibatch_size = batch_size // args.num_minibatches
    iterations = max(1, args.total_timesteps // batch_size)

    global_step, start = 0, time.time()
    next_obs = torch.as_tensor(envs.reset(seed=args.seed)[0])
    next_done = torch.zeros(args.num_envs)
    for iteration in range(1, iterations + 1):
        frac = 1.0 - (iteration - 1.0) / iterations  # linear lr annealing, as CleanRL
        optimizer.param_groups[0]["lr"] = frac * args.learning_rate
        for step in range(args.num_steps):
            global_step += args.num_envs
            obs_buf[step], dones[step] = next_obs, next_done
            with torch.no_grad():
                action, logprob, _, value = agent.act(next_obs)
            actions[step], logprobs[step], values[step] = action, logprob, value
            obs, reward, terminated, truncated, infos = envs.step(action.numpy())
            rewards[step] = torch.as_tensor(reward, dtype=torch.float32)
            next_obs = torch.as_tensor(obs)
            next_done = torch.as_tensor(np.logical_or(terminated, truncated), dtype=torch.float32)
            if "_episode" in infos and infos["_episode"].any():  # change 2 of the docstring
                done = infos["_episode"]
                writer.add_scalar("charts/episodic_return", infos["episode"]["r"][done].mean(),
                                  global_step)
                writer.add_scalar("charts/episodic_length", infos["episode"]["l"][done].mean(),
                                  global_step)
                writer.add_scalar("charts/accuracy",
                                  infos["final_info"]["is_success"][done].mean(), global_step)

        with torch.no_grad():  # generalised advantage estimation
            next_value = agent.value(next_obs)
            advantages = torch.zeros_like(rewards)
            last = torch.zeros(args.num_envs)
            for t in reversed(range(args.num_steps)):
                not_done = 1.0 - (next_done if t == args.num_steps - 1 else dones[t + 1])
                nxt = next_value if t == args.num_steps - 1 else values[t + 1]
                delta = rewards[t] + args.gamma * nxt * not_done - values[t]
                last = delta + args.gamma * args.gae_lambda * not_done * last
                advantages[t] = last
            returns = advantages + values

        b_obs, b_actions = obs_buf.reshape(-1, n_obs), actions.reshape(-1)
        b_logprobs, b_adv = logprobs.reshape(-1), advantages.reshape(-1)
        b_returns, b_values = returns.reshape(-1), values.reshape(-1)
        order = np.arange(batch_size)
        for _ in range(args.update_epochs):
            np.random.shuffle(order)
            for lo in range(0, batch_size, minibatch_size):
                mb = order[lo:lo + minibatch_size]
                _, newlogprob, entropy, newvalue = agent.act(b_obs[mb], b_actions[mb].long())
                ratio = (newlogprob - b_logprobs[mb]).exp()
                adv = (b_adv[mb] - b_adv[mb].mean()) / (b_adv[mb].std() + 1e-8)
                pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - args.clip_coef,
                                                                     1 + args.clip_coef)).mean()
                v_loss = 0.5 * ((newvalue - b_returns[mb]) ** 2).mean()
                loss = pg_loss - args.ent_coef * entropy.mean() + args.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()
        writer.add_scalar("losses/value_loss", v_loss.item(), global_step)
        writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
        writer.add_scalar("losses/entropy", entropy.mean().item(), global_step)
        writer.add_scalar("charts/SPS", global_step / (time.time() - start), global_step)

    sps = global_step / (time.time() - start)
    envs.close()
    result = {"steps": global_step, "steps_per_s": round(sps, 1),
              **{f"val_{k}": round(v, 4) for k, v in evaluate(agent, args).items()}}
    for key, value in result.items():
        writer.add_scalar(f"final/{key}", value, global_step)
    writer.close()
    print(result)
    return result


if __name__ == "__main__":
    main()
