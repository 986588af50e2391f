"""The baselines' key math on small tensors and toy models, and each baseline through the real
configs and task loop on the fast backbone."""

import json
import math

import pytest

from conftest import capture_after
import torch
from hydra.utils import instantiate
from torch import nn

from hide.loop import run_continual
from hide.methods.ewc import EWC, diagonal_fisher, ewc_penalty
from hide.methods.lwf import LwF, distillation_loss
from hide.methods.olora import orthogonality_loss
from hide.models.lora import MergedSlotsLoRALinear
from hide.methods.replay import Replay, draw_buffer
from hide.models.lora import LoRALinear, MoELoRALinear, adapters_disabled


# -- EWC ------------------------------------------------------------------------------------
def test_fisher_is_the_mean_squared_gradient_of_a_toy_model():
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False)
    batches = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(3)]

    def loss(m, batch):
        x, y = batch
        return ((m(x) - y) ** 2).mean()

    fisher = diagonal_fisher(model, loss, batches, dict(model.named_parameters()))
    w = model.weight.detach()
    by_hand = torch.zeros_like(w)
    for x, y in batches:  # d/dw mean((x w^T - y)^2) = 2/n sum (x w^T - y) x
        grad = 2 * ((x @ w.T - y) * x).mean(0, keepdim=True)
        by_hand += grad ** 2
    torch.testing.assert_close(fisher["weight"], by_hand / 3)
    assert model.weight.grad is None  # the gradients it made are not left behind


def test_ewc_penalty_equals_the_hand_sum_over_tasks():
    theta = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([[3.0]])}
    consolidated = [({"a": torch.tensor([0.5, 2.0]), "b": torch.tensor([[1.0]])},
                     {"a": torch.tensor([0.0, 0.0]), "b": torch.tensor([[1.0]])}),
                    ({"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([[0.25]])},
                     {"a": torch.tensor([2.0, 5.0]), "b": torch.tensor([[5.0]])})]
    # task 1: 0.5*1 + 2*4 + 1*4 = 12.5 ; task 2: 1*1 + 0 + 0.25*4 = 2
    assert ewc_penalty(theta, consolidated).item() == pytest.approx(14.5)
    assert ewc_penalty(theta, []).item() == 0.0


def test_ewc_online_mode_decays_and_keeps_one_pair():
    method = EWC(mode="online", gamma=0.5)
    model = nn.Linear(2, 1, bias=False)

    class Module:
        pass

    module = Module()
    module.model = model
    fishers = []

    def fake_fisher(m, loss, batches, params):
        value = torch.full_like(params["weight"], float(len(fishers) + 1))
        fishers.append(value)
        return {"weight": value}

    import hide.methods.ewc as ewc_module
    original = ewc_module.diagonal_fisher
    ewc_module.diagonal_fisher = fake_fisher
    try:
        method.on_task_end(module, 0, [])
        with torch.no_grad():
            model.weight.add_(1.0)
        method.on_task_end(module, 1, [])
    finally:
        ewc_module.diagonal_fisher = original
    assert len(method.consolidated) == 1
    fisher, star = method.consolidated[0]
    torch.testing.assert_close(fisher["weight"], torch.full_like(model.weight, 0.5 * 1 + 2))
    torch.testing.assert_close(star["weight"], model.weight.detach())


def test_ewc_pairs_loaded_on_the_cpu_follow_the_parameters_to_their_device():
    """A resumed run loads EWC's Fisher and reference weights on the CPU; on a GPU the parameters
    are elsewhere (the meta device stands in for it here)."""
    method = EWC(mode="online", ewc_lambda=1.0)
    method.load_state_dict({"consolidated": [({"weight": torch.ones(1, 2)}, {"weight": torch.zeros(1, 2)})]})

    class Module:
        model = nn.Linear(2, 1, bias=False, device="meta")

    penalty = method.extra_loss(Module(), batch={}, outputs=None)
    assert penalty.device.type == "meta"
    fisher, star = method.consolidated[0]
    assert fisher["weight"].device.type == star["weight"].device.type == "meta"


# -- O-LoRA ---------------------------------------------------------------------------------
def test_olora_loss_is_the_l1_of_the_products():
    torch.manual_seed(0)
    current = torch.randn(4, 6)
    earlier = [torch.randn(4, 6), torch.randn(4, 6)]
    by_hand = sum(sum(abs(sum(current[i, k] * A[j, k] for k in range(6))) for i in range(4) for j in range(4))
                  for A in earlier)
    assert orthogonality_loss(current, earlier).item() == pytest.approx(float(by_hand), rel=1e-5)
    assert orthogonality_loss(current, []).item() == 0.0
    q, _ = torch.linalg.qr(torch.randn(6, 6))  # orthogonal rows: no penalty
    assert orthogonality_loss(q[:3], [q[3:]]).item() == pytest.approx(0.0, abs=1e-5)


def test_merged_slots_add_the_earlier_experts():
    torch.manual_seed(0)
    layer = MergedSlotsLoRALinear(nn.Linear(6, 5), rank=2, alpha=4, num_slots=3, init_std=0.1)
    for B in layer.lora_B:
        nn.init.normal_(B)
    x = torch.randn(3, 6)
    layer.active_slot, layer.merged_slots = 2, [0, 1]
    by_hand = layer.base(x) + sum(2.0 * x @ (layer.lora_B[k] @ layer.lora_A[k]).T for k in range(3))
    torch.testing.assert_close(layer(x), by_hand)


# -- MoELoRA --------------------------------------------------------------------------------
def test_moelora_router_weights_sum_to_one_and_gradients_reach_every_expert():
    torch.manual_seed(0)
    layer = MoELoRALinear(nn.Linear(8, 6), rank=8, alpha=16, num_experts=4, init_std=0.1)
    nn.init.normal_(layer.lora_B)  # B = 0 at init would block the gradient to A and the router
    x = torch.randn(2, 5, 8)
    gates = layer.gates(x)
    assert gates.shape == (2, 5, 4)
    torch.testing.assert_close(gates.sum(-1), torch.ones(2, 5))
    layer(x).square().sum().backward()
    for e in range(4):
        assert layer.lora_A.grad[e].abs().sum() > 0 and layer.lora_B.grad[e].abs().sum() > 0
    assert layer.router.weight.grad.abs().sum() > 0
    # the output is the per-token gate-weighted sum of the experts, computed one by one
    with torch.no_grad():
        by_hand = layer.base(x) + 2.0 * sum(
            gates[..., e:e + 1] * (x @ layer.lora_A[e].T @ layer.lora_B[e].T) for e in range(4))
        torch.testing.assert_close(layer(x), by_hand)
        with adapters_disabled(layer):
            torch.testing.assert_close(layer(x), layer.base(x))


def test_moelora_has_lora_parameters_plus_a_router():
    lora = LoRALinear(nn.Linear(8, 6), rank=8, alpha=16)
    moe = MoELoRALinear(nn.Linear(8, 6), rank=8, alpha=16, num_experts=4)
    assert moe.lora_A.numel() + moe.lora_B.numel() == lora.lora_A[0].numel() + lora.lora_B[0].numel()
    assert moe.router.weight.numel() == 4 * 8
    with pytest.raises(ValueError, match="split evenly"):
        MoELoRALinear(nn.Linear(8, 6), rank=8, alpha=16, num_experts=3)


# -- LwF ------------------------------------------------------------------------------------
def test_lwf_loss_is_zero_when_student_equals_teacher_and_only_counts_answers():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, -100], [-100, 1, 2, -100, -100]])
    assert distillation_loss(logits, logits.clone(), labels, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(2, 5, 7)
    loss = distillation_loss(logits, other, labels, 2.0)
    assert loss.item() > 0
    # by hand: positions whose next label is an answer token: (0,1), (0,2), (1,0), (1,1)
    total = 0.0
    for b, i in [(0, 1), (0, 2), (1, 0), (1, 1)]:
        p = torch.softmax(other[b, i] / 2, -1)
        q = torch.log_softmax(logits[b, i] / 2, -1)
        total += (p * (p.log() - q)).sum().item()
    assert loss.item() == pytest.approx(4.0 * total / 4, rel=1e-5)
    # positions whose next token is not an answer do not matter
    changed = logits.clone()
    changed[0, 3] += 5.0
    assert distillation_loss(changed, other, labels, 2.0).item() == pytest.approx(loss.item(), rel=1e-6)


# -- Replay ---------------------------------------------------------------------------------
def test_replay_buffers_have_their_size_and_are_deterministic():
    records = list(range(100))
    a = draw_buffer(records, 10, seed=0, task_index=1)
    assert len(a) == 10 == len(set(a)) and a == sorted(a)
    assert a == draw_buffer(records, 10, seed=0, task_index=1)
    assert a != draw_buffer(records, 10, seed=1, task_index=1)
    assert a != draw_buffer(records, 10, seed=0, task_index=2)
    assert draw_buffer(records[:5], 10, 0, 0) == records[:5]

    class Task:
        def __init__(self, n, tag):
            self.train = [f"{tag}{i}" for i in range(n)]

    tasks = [Task(50, "a"), Task(50, "b"), Task(50, "c")]
    method = Replay(buffer_per_task=7, seed=3)
    assert method.extra_train_items(tasks, [0]) == []
    method.on_task_end(None, 0, None)
    items = method.extra_train_items(tasks, [1])
    assert len(items) == 7 and {t for t, _ in items} == {0}
    method.on_task_end(None, 1, None)
    items = method.extra_train_items(tasks, [2])
    assert [sum(t == k for t, _ in items) for k in (0, 1)] == [7, 7]
    assert [r for t, r in items if t == 0] == draw_buffer(tasks[0].train, 7, 3, 0)


# -- through the real configs and loop ------------------------------------------------------
@pytest.mark.parametrize("method", ["moelora", "olora", "ewc", "lwf", "replay"])
def test_each_baseline_runs_the_task_loop(fast_cfg, tmp_path, method):
    cfg = fast_cfg(f"method={method}", "trainer.max_epochs=1")
    metrics = run_continual(cfg, tmp_path / "run")
    assert metrics["method"] == method
    assert len(metrics["matrix"]) == 3 and all(v is not None for row in metrics["matrix"] for v in row)
    assert metrics["params_trainable"] > 0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["Last"] == metrics["Last"]


def test_olora_freezes_earlier_slots_uses_them_and_penalises_overlap(fast_cfg, tmp_path, monkeypatch):
    from hide.methods.olora import OLoRA

    seen = {}

    def after_task(self, module, t):
        seen[t] = {n: (a.lora_A[t].detach().clone(), a.lora_B[t].detach().clone()) for n, a in self.adapters.items()}
        seen["method"] = self

    losses = []
    original_loss = OLoRA.extra_loss

    def loss(self, module, batch, outputs):
        value = original_loss(self, module, batch, outputs)
        losses.append((self.current, None if value is None else value.item()))
        return value

    capture_after(monkeypatch, OLoRA, "on_task_end", after_task)
    monkeypatch.setattr(OLoRA, "extra_loss", loss)
    metrics = run_continual(fast_cfg("method=olora"), tmp_path)
    method = seen["method"]
    for name, adapter in method.adapters.items():
        assert torch.equal(adapter.lora_A[0], seen[0][name][0]) and torch.equal(adapter.lora_B[0], seen[0][name][1])
        assert adapter.merged_slots == [0] and adapter.active_slot == 1  # inference: both slots
    assert all(v is None for t, v in losses if t == 0) and all(v > 0 for t, v in losses if t == 1)
    # one slot per linear trains per task; all T are stored
    assert metrics["params_stored"] == metrics["params_trainable"] + method.expert_parameters()

def test_ewc_reference_weights_after_each_task_and_penalty_zero_at_them(fast_cfg, tmp_path, monkeypatch):
    from hide.methods.ewc import EWC

    seen = {}
    capture_after(monkeypatch, EWC, "on_task_end", lambda self, module, t: seen.update(method=self, module=module))
    run_continual(fast_cfg("method=ewc", "method.mode=separate", "method.fisher_batches=2"), tmp_path)
    method, module = seen["method"], seen["module"]
    assert len(method.consolidated) == 2
    fisher, star = method.consolidated[-1]
    params = EWC.trainable(module.model)
    assert set(fisher) == set(params) and all((f >= 0).all() for f in fisher.values())
    assert sum(f.sum().item() for f in fisher.values()) > 0
    # the latest reference weights are the current model: its own term is exactly zero
    assert ewc_penalty(params, [method.consolidated[-1]]).item() == 0.0
    assert ewc_penalty(params, [method.consolidated[0]]).item() > 0


def test_lwf_teacher_is_the_previous_state_without_touching_the_model(fast_cfg, tmp_path, monkeypatch):
    seen = {}

    def at_start(self, module, t):
        if t == 1:
            model = module.model
            batch = next(iter(seen["loader"]))
            model.eval()
            with torch.no_grad():
                plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              pixel_values=batch["pixel_values"]).logits
                # student == teacher at the start of the task
                torch.testing.assert_close(self.teacher_logits(module, batch), plain)
                before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
                for p in model.parameters():
                    if p.requires_grad:
                        p.add_(0.05)
                moved = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              pixel_values=batch["pixel_values"]).logits
                teacher = self.teacher_logits(module, batch)
                torch.testing.assert_close(teacher, plain)  # still the old state
                assert not torch.allclose(moved, plain)
                for n, p in model.named_parameters():
                    if p.requires_grad:
                        p.copy_(before[n])  # leave the run as it was
            seen["checked"] = True

    def at_end(self, module, t):
        seen["loader"] = seen.get("loader") or seen["datamodule"].train_dataloader()

    from hide.data.datamodule import ContinualDataModule

    original_stage = ContinualDataModule.set_stage

    def set_stage(self, *args, **kwargs):
        seen["datamodule"] = self
        return original_stage(self, *args, **kwargs)

    monkeypatch.setattr(ContinualDataModule, "set_stage", set_stage)
    capture_after(monkeypatch, LwF, "on_task_start", at_start)
    capture_after(monkeypatch, LwF, "on_task_end", at_end)
    run_continual(fast_cfg("method=lwf"), tmp_path)
    assert seen.get("checked")


def test_lwf_training_loss_is_the_kl_to_the_previous_states_logits(fast_cfg, tmp_path, monkeypatch):
    """During the second task's training, LwF's extra loss equals tau^2 x the mean over answer tokens
    of KL(teacher || student), with the teacher's logits computed here by hand: a copy of the model
    holding the first task's final adapter and projector, evaluated without dropout. A loss that
    distilled from the student's own logits would be zero and fail here."""
    import copy

    taught, checked = {}, []

    def at_start(self, module, t):
        if t == 1:  # the state the first task ended in: the teacher of the second
            model = copy.deepcopy(module.model).eval()
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n in self.teacher:
                        p.copy_(self.teacher[n])
            taught["model"] = model

    original = LwF.extra_loss

    def extra_loss(self, module, batch, outputs):
        loss = original(self, module, batch, outputs)
        if loss is not None:
            with torch.no_grad():
                teacher = taught["model"](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                          pixel_values=batch["pixel_values"]).logits
            tau, labels = self.temperature, batch["labels"]
            total, count = 0.0, 0
            for b in range(labels.shape[0]):
                for i in range(labels.shape[1] - 1):
                    if labels[b, i + 1] != -100:  # logits at i predict token i + 1
                        p = torch.softmax(teacher[b, i].double() / tau, -1)
                        q = torch.log_softmax(outputs.logits[b, i].detach().double() / tau, -1)
                        total += float((p * (p.log() - q)).sum())
                        count += 1
            expected = self.distill_weight * tau ** 2 * total / count
            checked.append((float(loss.detach()), expected))
        return loss

    capture_after(monkeypatch, LwF, "on_task_start", at_start)
    monkeypatch.setattr(LwF, "extra_loss", extra_loss)
    run_continual(fast_cfg("method=lwf", "method.dropout=0"), tmp_path)
    assert len(checked) >= 3
    for loss, expected in checked:
        assert loss == pytest.approx(expected, rel=1e-4, abs=1e-7)
    # the first step's student is the teacher; once it has learnt, the loss is the distance
    assert checked[0][1] < 1e-6 and checked[-1][1] > 1e-3


def test_replay_mixes_the_buffer_into_later_stages(fast_cfg, tmp_path, monkeypatch):
    from hide.data.datamodule import ContinualDataModule

    stages = []
    original = ContinualDataModule.train_dataloader

    def loader(self):
        stages.append((list(self.stage_tasks), [t for t, _ in self.extra_items]))
        return original(self)

    monkeypatch.setattr(ContinualDataModule, "train_dataloader", loader)
    run_continual(fast_cfg("method=replay", "method.buffer_per_task=5"), tmp_path)
    by_stage = {tuple(tasks): extra for tasks, extra in stages}
    assert by_stage[(0,)] == [] and by_stage[(1,)] == [0] * 5


def test_moelora_trains_router_and_every_expert(fast_cfg, tmp_path, monkeypatch):
    from hide.methods.moelora import MoELoRA

    seen = {}
    original = MoELoRA.attach

    def attach(self, backbone, num_tasks):
        original(self, backbone, num_tasks)
        seen["start"] = {n: (a.router.weight.detach().clone(), a.lora_B.detach().clone()) for n, a in self.adapters.items()}
        seen["method"] = self

    monkeypatch.setattr(MoELoRA, "attach", attach)
    run_continual(fast_cfg("method=moelora"), tmp_path)
    method = seen["method"]
    changed_router = changed_experts = 0
    for name, adapter in method.adapters.items():
        router, B = seen["start"][name]
        changed_router += not torch.equal(adapter.router.weight, router)
        changed_experts += sum(not torch.equal(adapter.lora_B[e], B[e]) for e in range(adapter.num_experts))
    assert changed_router == len(method.adapters)
    assert changed_experts == len(method.adapters) * method.num_experts
