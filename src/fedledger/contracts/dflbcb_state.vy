# pragma version ^0.4.1
"""
@title DFLBCB state contract (Yang 2022, arXiv 2205.11137, Sections 3.4, 4.1, 4.3, 5)
@notice Holds the iteration, the stage, the committee in weight order, the fund pools,
        the pledges, the per-iteration participants, sub-model hashes, scores and the
        global model, and applies one stage transition per call. Every transition needs
        at least F+1 distinct signatures of the CURRENT committee, F = (n-1)//3, over
        keccak256(abi_encode(chain.id, self, it, stage, result_hash)); the result hash is
        recomputed here from the payload; only the first valid proof per (it, stage) is
        accepted. Participants' requests carry their own signatures over
        (chain.id, self, it, stage, value, node) and a bad request is skipped with an
        event, never reverting the whole call. Money is in wei, accuracy in permille,
        points in units of POINT.
"""

MAXN: constant(uint256) = 128
MAXC: constant(uint256) = 32
MAXK: constant(uint256) = 32
MAXR: constant(uint256) = 160  # MAXN + MAXC
POINT: constant(uint256) = 10**18

ELECT: constant(uint256) = 0
PLEDGE: constant(uint256) = 1
COMMIT: constant(uint256) = 2
WORK: constant(uint256) = 3

# reasons a participant request is skipped
SKIP_UNREGISTERED: constant(uint256) = 1
SKIP_BAD_SIGNATURE: constant(uint256) = 2
SKIP_DUPLICATE: constant(uint256) = 3
SKIP_SHORT_POOL: constant(uint256) = 4
SKIP_BELOW_MINIMUM: constant(uint256) = 5
SKIP_NOT_PARTICIPANT: constant(uint256) = 6

# reward and penalty kinds (the rows of the paper's Section 5.1 table)
KIND_WORK: constant(uint256) = 1        # rows 1+2: aggregated and evaluated correctly
KIND_SUBMIT: constant(uint256) = 3      # row 3: Alg 4
KIND_MASTER: constant(uint256) = 4      # row 4: Alg 5
KIND_SILENT: constant(uint256) = 5      # row 5: exponential
KIND_ALIVE: constant(uint256) = 6       # row 6: +1
KIND_NO_MODEL: constant(uint256) = 7    # row 7: linear 8 %
KIND_LOW_QUALITY: constant(uint256) = 8 # row 8: exponential
KIND_QUALITY: constant(uint256) = 9     # row 9: Alg 6


struct Sig:
    v: uint8
    r: bytes32
    s: bytes32


struct Request:
    node: address
    value: uint256      # the pledge (ELECT, PLEDGE) or the model hash as uint256 (COMMIT)
    v: uint8
    r: bytes32
    s: bytes32


struct Score:
    node: address
    score: uint256      # permille accuracy on the pre-agreed test set


struct Params:
    p_bps: uint256              # election weight coefficient p, basis points (< 5000)
    elect_ratio_bps: uint256    # P, basis points of registrants
    elect_times: uint256        # iterations per committee term
    min_elect_pledge: uint256   # wei
    min_pledge: uint256         # wei, participation pledge
    malicious_permille: uint256 # Alg 6 malicious rate n
    linear_bps: uint256         # linear deduction, 800 = 8 %
    exp_unit: uint256           # wei, first exponential deduction
    gas_price: uint256          # wei per gas when tx.gasprice is 0 (in-process chains)
    test_set_hash: bytes32
    layout_hash: bytes32
    dp_eps_milli: uint256
    dp_delta_exp: uint256       # delta = 10 ** -dp_delta_exp


event Initialized:
    initiator: indexed(address)
    committee: DynArray[address, MAXC]
    model_hash: bytes32
    params: Params
    curve_x: DynArray[uint256, MAXK]
    curve_y: DynArray[uint256, MAXK]

event Registered:
    node: indexed(address)
    amount: uint256

event Deposited:
    node: indexed(address)
    amount: uint256

event Withdrawn:
    node: indexed(address)
    amount: uint256

event StageChanged:
    it: indexed(uint256)
    from_stage: uint256
    to_stage: uint256
    result_hash: bytes32
    submitter: address
    signers: DynArray[address, MAXC]

event CommitteeElected:
    term: indexed(uint256)
    members: DynArray[address, MAXC]

event RequestSkipped:
    it: indexed(uint256)
    stage: uint256
    node: address
    reason: uint256

event ParticipantsAnnounced:
    it: indexed(uint256)
    nodes: DynArray[address, MAXN]

event SubmissionsAnnounced:
    it: indexed(uint256)
    nodes: DynArray[address, MAXN]
    model_hashes: DynArray[bytes32, MAXN]

event GlobalModel:
    it: indexed(uint256)
    model_hash: bytes32
    acc: uint256
    price: uint256

event Rewarded:
    node: indexed(address)
    kind: uint256
    points: uint256

event Slashed:
    node: indexed(address)
    kind: uint256
    amount: uint256

event Settled:
    it: indexed(uint256)
    pool: uint256
    total_points: uint256


initiator: public(address)
initialized: public(bool)
params: public(Params)
it: public(uint256)
stage: public(uint256)
term: public(uint256)
term_rounds: public(uint256)
committee: public(DynArray[address, MAXC])
is_member: public(HashMap[address, bool])
curve_x: public(DynArray[uint256, MAXK])
curve_y: public(DynArray[uint256, MAXK])

registered: public(HashMap[address, bool])
nodes: public(DynArray[address, MAXN])
pool: public(HashMap[address, uint256])
escrow: public(HashMap[address, uint256])
elect_escrow: public(HashMap[address, uint256])
acc_sum: public(HashMap[address, uint256])
acc_cnt: public(HashMap[address, uint256])
points: public(HashMap[address, uint256])
total_points: public(uint256)
offences: public(HashMap[address, uint256])
prize_escrow: public(uint256)

participants: HashMap[uint256, DynArray[address, MAXN]]
joined: public(HashMap[uint256, HashMap[address, uint256]])
candidacy: public(HashMap[uint256, HashMap[address, uint256]])
submission: public(HashMap[uint256, HashMap[address, bytes32]])
score_of: public(HashMap[uint256, HashMap[address, uint256]])
global_model: public(HashMap[uint256, bytes32])
global_acc: public(HashMap[uint256, uint256])
global_price: public(HashMap[uint256, uint256])
accepted: public(HashMap[uint256, HashMap[uint256, bytes32]])
accepted_by: public(HashMap[uint256, HashMap[uint256, address]])

round_points: HashMap[uint256, HashMap[address, uint256]]
round_nodes: DynArray[address, MAXR]
round_total: uint256
round_slashed: uint256


@deploy
def __init__():
    self.initiator = msg.sender


# ---------------------------------------------------------------- start and funds

@external
@payable
def initialize(committee: DynArray[address, MAXC], model_hash: bytes32, params: Params,
               curve_x: DynArray[uint256, MAXK], curve_y: DynArray[uint256, MAXK]):
    assert msg.sender == self.initiator, "initiator only"
    assert not self.initialized, "already initialized"
    assert len(committee) >= 4, "committee needs at least 4 members"
    assert len(curve_x) == len(curve_y), "curve x and y lengths differ"
    assert params.p_bps <= 10000, "p_bps above 10000"
    assert params.elect_times >= 1, "elect_times below 1"
    prev: uint256 = 0
    for i: uint256 in range(len(curve_x), bound=MAXK):
        assert i == 0 or curve_x[i] > prev, "curve x not strictly increasing"
        prev = curve_x[i]
    self._set_committee(committee)
    self.params = params
    self.curve_x = curve_x
    self.curve_y = curve_y
    self.global_model[0] = model_hash
    self.prize_escrow = msg.value
    self.it = 1
    self.stage = ELECT
    self.initialized = True
    log Initialized(initiator=msg.sender, committee=committee, model_hash=model_hash,
                    params=params, curve_x=curve_x, curve_y=curve_y)


@external
@payable
def register():
    assert not self.registered[msg.sender], "already registered"
    self.registered[msg.sender] = True
    self.nodes.append(msg.sender)
    self.pool[msg.sender] += msg.value
    log Registered(node=msg.sender, amount=msg.value)


@external
@payable
def deposit():
    assert self.registered[msg.sender], "not registered"
    self.pool[msg.sender] += msg.value
    log Deposited(node=msg.sender, amount=msg.value)


@external
@payable
def fund_prizes():
    self.prize_escrow += msg.value


@external
def withdraw(amount: uint256):
    assert self.pool[msg.sender] >= amount, "amount above the free pool"
    self.pool[msg.sender] -= amount
    send(msg.sender, amount)
    log Withdrawn(node=msg.sender, amount=amount)


# ---------------------------------------------------------------- views

@view
@external
def committee_members() -> DynArray[address, MAXC]:
    return self.committee


@view
@external
def participants_of(it: uint256) -> DynArray[address, MAXN]:
    return self.participants[it]


@view
@external
def quorum() -> uint256:
    return (len(self.committee) - 1) // 3 + 1


@view
@external
def proof_digest(it: uint256, stage: uint256, result_hash: bytes32) -> bytes32:
    return self._digest(it, stage, result_hash)


@view
@external
def avg_accuracy(node: address) -> uint256:
    if self.acc_cnt[node] == 0:
        return 0
    return self.acc_sum[node] // self.acc_cnt[node]


@view
@external
def price_of(acc: uint256) -> uint256:
    return self._price(acc)


@view
@internal
def _price(acc: uint256) -> uint256:
    # the paper's "average principle": between two points, the mean of their prices
    n: uint256 = len(self.curve_x)
    if n == 0 or acc < self.curve_x[0]:
        return 0
    for i: uint256 in range(n, bound=MAXK):
        if acc == self.curve_x[i]:
            return self.curve_y[i]
        if i + 1 < n and acc < self.curve_x[i + 1]:
            return (self.curve_y[i] + self.curve_y[i + 1]) // 2
    return self.curve_y[n - 1]


@view
@internal
def _digest(it: uint256, stage: uint256, result_hash: bytes32) -> bytes32:
    return keccak256(abi_encode(chain.id, self, it, stage, result_hash))


# ---------------------------------------------------------------- proof checks

@internal
def _set_committee(members: DynArray[address, MAXC]):
    for m: address in self.committee:
        self.is_member[m] = False
    for m: address in members:
        assert m != empty(address), "zero address in committee"
        assert not self.is_member[m], "duplicate committee member"
        self.is_member[m] = True
    self.committee = members


@internal
def _check_proof(stage: uint256, result_hash: bytes32,
                 sigs: DynArray[Sig, MAXC]) -> DynArray[address, MAXC]:
    assert self.initialized, "not initialized"
    assert self.stage == stage, "wrong stage"
    assert self.accepted[self.it][stage] == empty(bytes32), "stage already proven"
    need: uint256 = (len(self.committee) - 1) // 3 + 1
    assert len(sigs) >= need, "fewer than F+1 signatures"
    digest: bytes32 = self._digest(self.it, stage, result_hash)
    signers: DynArray[address, MAXC] = []
    last: address = empty(address)
    for sg: Sig in sigs:
        who: address = ecrecover(digest, sg.v, sg.r, sg.s)
        assert who != empty(address), "unrecoverable signature"
        assert self.is_member[who], "signer not in the current committee"
        # distinct signers: signatures sorted by signer address, ascending
        assert convert(who, uint256) > convert(last, uint256), "signers not distinct"
        last = who
        signers.append(who)
    return signers


@view
@internal
def _request_ok(stage: uint256, rq: Request) -> bool:
    d: bytes32 = keccak256(abi_encode(chain.id, self, self.it, stage, rq.value, rq.node))
    return ecrecover(d, rq.v, rq.r, rq.s) == rq.node and rq.node != empty(address)


@internal
def _advance(stage: uint256, to: uint256, result_hash: bytes32,
             signers: DynArray[address, MAXC]):
    self.accepted[self.it][stage] = result_hash
    self.accepted_by[self.it][stage] = msg.sender
    self.stage = to
    log StageChanged(it=self.it, from_stage=stage, to_stage=to, result_hash=result_hash,
                     submitter=msg.sender, signers=signers)


# ---------------------------------------------------------------- stages

@internal
def _skip(stage: uint256, node: address, reason: uint256):
    log RequestSkipped(it=self.it, stage=stage, node=node, reason=reason)


@internal
def _lock(stage: uint256, rq: Request, minimum: uint256) -> bool:
    """Checks one pledge-like request; True when it may be applied."""
    if not self.registered[rq.node]:
        self._skip(stage, rq.node, SKIP_UNREGISTERED)
        return False
    if not self._request_ok(stage, rq):
        self._skip(stage, rq.node, SKIP_BAD_SIGNATURE)
        return False
    if rq.value < minimum:
        self._skip(stage, rq.node, SKIP_BELOW_MINIMUM)
        return False
    if self.pool[rq.node] < rq.value:
        self._skip(stage, rq.node, SKIP_SHORT_POOL)
        return False
    return True


@external
def submit_elect(members: DynArray[address, MAXC], cands: DynArray[Request, MAXN],
                 result_hash: bytes32, sigs: DynArray[Sig, MAXC]):
    """Elect -> Pledge (Scenario 4). Members in weight order; each must be a valid candidate.

    Candidates whose request fails on chain are skipped; when fewer than 4 valid members
    remain, the current committee stays for a new term (V6)."""
    signers: DynArray[address, MAXC] = self._check_proof(ELECT, result_hash, sigs)
    assert keccak256(abi_encode(members, cands)) == result_hash, "result hash mismatch"
    for rq: Request in cands:
        if self.candidacy[self.it][rq.node] != 0:
            self._skip(ELECT, rq.node, SKIP_DUPLICATE)
        elif self._lock(ELECT, rq, self.params.min_elect_pledge):
            self.candidacy[self.it][rq.node] = rq.value
    chosen: DynArray[address, MAXC] = []
    for m: address in members:
        if self.candidacy[self.it][m] != 0 and m not in chosen:
            chosen.append(m)
    if len(chosen) >= 4:
        for m: address in self.committee:
            self.pool[m] += self.elect_escrow[m]
            self.elect_escrow[m] = 0
        for m: address in chosen:
            amount: uint256 = self.candidacy[self.it][m]
            self.pool[m] -= amount
            self.elect_escrow[m] += amount
        self._set_committee(chosen)
    self.term += 1
    self.term_rounds = 0
    log CommitteeElected(term=self.term, members=self.committee)
    self._advance(ELECT, PLEDGE, result_hash, signers)


@external
def submit_pledge(reqs: DynArray[Request, MAXN], result_hash: bytes32,
                  sigs: DynArray[Sig, MAXC]):
    """Pledge -> Commit (Scenario 8): pledges debited in one batch, short pools skipped."""
    signers: DynArray[address, MAXC] = self._check_proof(PLEDGE, result_hash, sigs)
    assert keccak256(abi_encode(reqs)) == result_hash, "result hash mismatch"
    for rq: Request in reqs:
        if self.joined[self.it][rq.node] != 0:
            self._skip(PLEDGE, rq.node, SKIP_DUPLICATE)
        elif self._lock(PLEDGE, rq, self.params.min_pledge):
            self.joined[self.it][rq.node] = rq.value
            self.pool[rq.node] -= rq.value
            self.escrow[rq.node] += rq.value
            self.participants[self.it].append(rq.node)
    log ParticipantsAnnounced(it=self.it, nodes=self.participants[self.it])
    self._advance(PLEDGE, COMMIT, result_hash, signers)


@external
def submit_commit(subs: DynArray[Request, MAXN], result_hash: bytes32,
                  sigs: DynArray[Sig, MAXC]):
    """Commit -> Work (Scenario 11): sub-model hashes of this iteration's participants."""
    signers: DynArray[address, MAXC] = self._check_proof(COMMIT, result_hash, sigs)
    assert keccak256(abi_encode(subs)) == result_hash, "result hash mismatch"
    nodes: DynArray[address, MAXN] = []
    hashes: DynArray[bytes32, MAXN] = []
    for rq: Request in subs:
        if self.joined[self.it][rq.node] == 0:
            self._skip(COMMIT, rq.node, SKIP_NOT_PARTICIPANT)
        elif self.submission[self.it][rq.node] != empty(bytes32):
            self._skip(COMMIT, rq.node, SKIP_DUPLICATE)
        elif not self._request_ok(COMMIT, rq) or rq.value == 0:
            self._skip(COMMIT, rq.node, SKIP_BAD_SIGNATURE)
        else:
            self.submission[self.it][rq.node] = convert(rq.value, bytes32)
            nodes.append(rq.node)
            hashes.append(convert(rq.value, bytes32))
    log SubmissionsAnnounced(it=self.it, nodes=nodes, model_hashes=hashes)
    self._advance(COMMIT, WORK, result_hash, signers)


# ---------------------------------------------------------------- work: rewards, penalties

@internal
def _credit(node: address, kind: uint256, pts: uint256):
    if pts == 0:
        return
    if self.round_points[self.it][node] == 0:
        self.round_nodes.append(node)
    self.round_points[self.it][node] += pts
    self.round_total += pts
    log Rewarded(node=node, kind=kind, points=pts)


@internal
def _take(node: address, kind: uint256, amount: uint256):
    """Deducts from the round escrow, then the election escrow, then the free pool."""
    left: uint256 = amount
    part: uint256 = min(left, self.escrow[node])
    self.escrow[node] -= part
    left -= part
    part = min(left, self.elect_escrow[node])
    self.elect_escrow[node] -= part
    left -= part
    part = min(left, self.pool[node])
    self.pool[node] -= part
    left -= part
    taken: uint256 = amount - left
    self.round_slashed += taken
    log Slashed(node=node, kind=kind, amount=taken)


@internal
def _exp_slash(node: address, kind: uint256):
    """[EXP] the k-th offence deducts exp_unit * 2**(k-1)."""
    self.offences[node] += 1
    k: uint256 = min(self.offences[node], 64)
    self._take(node, kind, self.params.exp_unit * pow_mod256(2, k - 1))


@external
def submit_work(scores: DynArray[Score, MAXN], global_hash: bytes32, global_acc: uint256,
                alive: DynArray[address, MAXC], result_hash: bytes32,
                sigs: DynArray[Sig, MAXC]):
    """Work -> Elect or Pledge (Scenario 14): scores (descending), global model, rewards."""
    gas_start: uint256 = msg.gas
    signers: DynArray[address, MAXC] = self._check_proof(WORK, result_hash, sigs)
    assert keccak256(abi_encode(scores, global_hash, global_acc, alive)) == result_hash, \
        "result hash mismatch"
    it: uint256 = self.it
    self.round_nodes = []
    self.round_total = 0
    self.round_slashed = 0
    m: uint256 = len(scores)
    prev: uint256 = max_value(uint256)
    for sc: Score in scores:
        assert sc.score <= prev, "scores not in descending order"
        assert sc.score <= 1000, "score above 1000 permille"
        assert self.submission[it][sc.node] != empty(bytes32), "score for a node without a model"
        assert self.score_of[it][sc.node] == 0, "node scored twice"
        self.score_of[it][sc.node] = sc.score + 1
        prev = sc.score
    # Alg 6: median, malicious below n * median, rank-discounted reward above it
    if m > 0:
        mids: uint256 = scores[m // 2].score
        if m % 2 == 0:
            mids = (scores[m // 2 - 1].score + scores[m // 2].score) // 2
        for i: uint256 in range(m, bound=MAXN):
            sc: Score = scores[i]
            self.acc_sum[sc.node] += sc.score
            self.acc_cnt[sc.node] += 1
            if sc.score * 1000 < mids * self.params.malicious_permille:
                self._exp_slash(sc.node, KIND_LOW_QUALITY)
            elif sc.score > mids:
                self._credit(sc.node, KIND_QUALITY, POINT * (m - i - 1) // m)
    # pledged without a model: linear deduction; then release the round escrow
    for node: address in self.participants[it]:
        if self.submission[it][node] == empty(bytes32):
            self._take(node, KIND_NO_MODEL, self.joined[it][node] * self.params.linear_bps // 10000)
        self.pool[node] += self.escrow[node]
        self.escrow[node] = 0
    # committee: answering (+1), silence (exponential), work (+1 +1), master (Alg 5)
    seen: DynArray[address, MAXC] = []
    for a: address in alive:
        assert self.is_member[a], "alive entry not in the committee"
        assert a not in seen, "alive entry repeated"
        seen.append(a)
        self._credit(a, KIND_ALIVE, POINT)
    for c: address in self.committee:
        if c not in seen:
            self._exp_slash(c, KIND_SILENT)
    for s: address in signers:
        self._credit(s, KIND_WORK, 2 * POINT)
    rs: uint256 = min(len(self.participants[it]) + m, 100)
    self._credit(self.committee[0], KIND_MASTER, (100 + rs) * POINT // 100)
    # the round's prize pool: the price of the global model plus this round's deductions
    price: uint256 = self._price(global_acc)
    paid: uint256 = min(price, self.prize_escrow)
    self.prize_escrow -= paid
    tm: uint256 = paid + self.round_slashed
    # Alg 4: s = ts * sum(p) / (tm - ts), ts the wei the submitter spent
    if self.is_member[msg.sender]:
        gp: uint256 = tx.gasprice
        if gp == 0:
            gp = self.params.gas_price
        ts: uint256 = (gas_start - msg.gas + 21000) * gp
        if tm > ts:
            if self.total_points == 0:
                self._credit(msg.sender, KIND_SUBMIT, POINT)
            else:
                self._credit(msg.sender, KIND_SUBMIT, ts * self.total_points // (tm - ts))
    # settle: payout_i = points_i / sum(points) * tm, credited to the free pool
    spent: uint256 = 0
    for node: address in self.round_nodes:
        pts: uint256 = self.round_points[it][node]
        pay: uint256 = pts * tm // self.round_total
        self.pool[node] += pay
        spent += pay
        self.points[node] += pts
    self.total_points += self.round_total
    self.prize_escrow += tm - spent
    log Settled(it=it, pool=tm, total_points=self.round_total)
    self.global_model[it] = global_hash
    self.global_acc[it] = global_acc
    self.global_price[it] = price
    log GlobalModel(it=it, model_hash=global_hash, acc=global_acc, price=price)
    self.term_rounds += 1
    nxt: uint256 = PLEDGE
    if self.term_rounds >= self.params.elect_times:
        nxt = ELECT
    self._advance(WORK, nxt, result_hash, signers)
    self.it = it + 1
