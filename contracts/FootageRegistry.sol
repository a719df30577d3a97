// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title camswarm footage registry
/// @notice Write-once Merkle roots of recorded footage, one per (factory, device, period start).
/// An anchor can never be changed or removed: that is what makes it tamper evidence.
/// Only the deployer (owner) and the submitters it authorises may anchor.
contract FootageRegistry {
    struct Record {
        bytes root;
        uint32 periodSeconds;
        uint64 anchoredAt;
        address submitter;
    }

    /// @notice Longest root accepted (a SHA-256 root is 32 bytes; room for a 64-byte hash).
    uint256 public constant MAX_ROOT_LENGTH = 64;

    address public immutable owner;
    mapping(address => bool) public isSubmitter;
    mapping(bytes32 => Record) private records;

    error NotAuthorized(address caller);
    error AlreadyAnchored(bytes32 key);
    error BadRootLength(uint256 length);
    error ZeroPeriod();

    event Anchored(
        bytes32 indexed key,
        string factory,
        string device,
        uint64 periodStart,
        uint32 periodSeconds,
        bytes root,
        address indexed submitter
    );
    event SubmitterSet(address indexed account, bool allowed);

    constructor() {
        owner = msg.sender;
    }

    function setSubmitter(address account, bool allowed) external {
        if (msg.sender != owner) revert NotAuthorized(msg.sender);
        isSubmitter[account] = allowed;
        emit SubmitterSet(account, allowed);
    }

    function keyOf(string calldata factory, string calldata device, uint64 periodStart)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(factory, device, periodStart));
    }

    function anchor(
        string calldata factory,
        string calldata device,
        uint64 periodStart,
        uint32 periodSeconds,
        bytes calldata root
    ) external {
        if (msg.sender != owner && !isSubmitter[msg.sender]) revert NotAuthorized(msg.sender);
        if (root.length == 0 || root.length > MAX_ROOT_LENGTH) revert BadRootLength(root.length);
        if (periodSeconds == 0) revert ZeroPeriod();
        bytes32 key = keyOf(factory, device, periodStart);
        if (records[key].root.length != 0) revert AlreadyAnchored(key);
        records[key] = Record(root, periodSeconds, uint64(block.timestamp), msg.sender);
        emit Anchored(key, factory, device, periodStart, periodSeconds, root, msg.sender);
    }

    /// @notice The anchor of a period; an empty root when nothing is anchored for it.
    function rootOf(string calldata factory, string calldata device, uint64 periodStart)
        external
        view
        returns (bytes memory root, uint32 periodSeconds, uint64 anchoredAt, address submitter)
    {
        Record storage record = records[keyOf(factory, device, periodStart)];
        return (record.root, record.periodSeconds, record.anchoredAt, record.submitter);
    }
}
