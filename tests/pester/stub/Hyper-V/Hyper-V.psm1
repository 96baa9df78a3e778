# A stand-in for the Hyper-V PowerShell module, for the Pester tests of the dispatcher
# (tests/pester/Dispatcher.Tests.ps1). It runs on any Windows machine, without the Hyper-V role.
#
# How it is loaded: the tests start core/backends/hyperv/dispatcher.ps1 as a child process
# (`-File`, as hvkube does) with tests/pester/stub FIRST in its PSModulePath. The dispatcher's own
# `Import-Module Hyper-V` then finds this folder (Hyper-V\Hyper-V.psm1) before any real module, and
# its module-qualified calls (`Hyper-V\Get-VM`) resolve to the functions below. This module also
# imports the CIM stand-in (..\HvkubeCimStub) into the global scope, where the dispatcher's
# unqualified Get-CimInstance, Get-CimAssociatedInstance and Invoke-CimMethod find its functions
# before the real cmdlets (a function wins over a cmdlet of the same name).
#
# The host: an in-memory set of VMs and checkpoints, read once from the JSON file named by
# $env:HVKUBE_STUB_HOST (written by the tests), changed by the calls (Start-VM makes a VM Running,
# Checkpoint-VM adds a checkpoint, ...). Every call is appended as one JSON line to the file named
# by $env:HVKUBE_STUB_LOG, with its bound parameters, so that the tests can see what the dispatcher
# passed.
#
# Objects: [pscustomobject]s with the real type names (PSTypeName), the real property names and
# .NET types (tests/test_pester_files.py checks the names against tests/data/hyperv-module.json),
# and real enums: VMState and the others are compiled below with the members and values of the
# real module, so that an enum the dispatcher forgot to stringify is serialised as a number by
# Windows PowerShell 5.1, as on a real host.
#
# Errors: ErrorRecords with the error ids, categories, exception type
# (Microsoft.HyperV.PowerShell.VirtualizationException, compiled below) and inner HRESULTs that
# real hosts report (see tests/hyperv_records.py). Reported as non-terminating errors that the
# caller's -ErrorAction or $ErrorActionPreference turns into terminating ones, as a compiled
# cmdlet does. One difference remains: the FullyQualifiedErrorId of an error from a function ends
# in the function's name ('InvalidParameter,Get-VM'), where the real one ends in the cmdlet's class
# ('InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM'). The tests check the error id
# (before the comma), never the suffix.
#
# Windows PowerShell 5.1 must load this file: no PowerShell 7 syntax, and ASCII only (5.1 reads a
# file without a byte order mark as ANSI).

Set-StrictMode -Version 2.0

if (-not ('Microsoft.HyperV.PowerShell.VMState' -as [type])) {
    # Members and values as in tests/data/hyperv-module.json (checked by tests/test_pester_files.py).
    # C# 5 only: Windows PowerShell 5.1 compiles this with the .NET Framework's compiler.
    Add-Type -TypeDefinition @'
namespace Microsoft.HyperV.PowerShell
{
    public class VirtualizationException : System.Exception
    {
        public VirtualizationException(string message) : base(message) { }
        public VirtualizationException(string message, System.Exception inner) : base(message, inner) { }
    }

    public enum VMState
    {
        Other = 1, Running = 2, Off = 3, Stopping = 4, Saved = 6, Paused = 9, Starting = 10,
        Reset = 11, Saving = 32773, Pausing = 32776, Resuming = 32777, FastSaved = 32779,
        FastSaving = 32780, ForceShutdown = 32781, ForceReboot = 32782, Hibernated = 32783,
        ComponentServicing = 32784, RunningCritical = 32785, OffCritical = 32786,
        StoppingCritical = 32787, SavedCritical = 32788, PausedCritical = 32789,
        StartingCritical = 32790, ResetCritical = 32791, SavingCritical = 32792,
        PausingCritical = 32793, ResumingCritical = 32794, FastSavedCritical = 32795,
        FastSavingCritical = 32796
    }

    public enum VMHeartbeatStatus
    {
        Unknown = 0, Disabled = 1, NoContact = 2, Error = 3, LostCommunication = 4,
        OkApplicationsUnknown = 5, OkApplicationsHealthy = 6, OkApplicationsCritical = 7, Paused = 8
    }

    public enum VMIntegrationComponentOperationalStatus
    {
        Ok = 2, Degraded = 3, Error = 6, NonRecoverableError = 7, NoContact = 12,
        LostCommunication = 13, ApplicationCritical = 32782, CommunicationTimedOut = 32783,
        CommunicationFailed = 32784, ProtocolMismatch = 32775, Disabled = 32896
    }

    public enum SnapshotType
    {
        Standard = 0, Recovery = 1, Planned = 2, Missing = 5, Replica = 6, AppConsistentReplica = 7,
        SyncedReplica = 8
    }

    public enum StopAction { TurnOff = 2, Save = 3, ShutDown = 4 }

    public enum CheckpointType { Disabled = 2, Production = 3, ProductionOnly = 4, Standard = 5 }

    public enum EnhancedSessionTransportType { VMBus = 0, HvSocket = 1 }
}

namespace Microsoft.Vhd.PowerShell
{
    public enum VhdType { Unknown = 0, Fixed = 2, Dynamic = 3, Differencing = 4 }

    public enum VhdFormat { Unknown = 0, VHD = 2, VHDX = 3, VHDSet = 4 }
}
'@
}

# -- the host ------------------------------------------------------------------------------------

$script:Utf8 = New-Object System.Text.UTF8Encoding $false
$script:LogPath = $env:HVKUBE_STUB_LOG
$script:ComputerName = 'STUBHOST'
$script:VMs = [ordered]@{}        # VM id (lower-case guid text) -> record (hashtable)
$script:Snapshots = [ordered]@{}  # checkpoint id -> record, in creation order
$script:HostInfo = @{
    LogicalProcessorCount = 8
    MemoryCapacity        = [long]34359738368
    VirtualHardDiskPath   = 'C:\ProgramData\Microsoft\Windows\Virtual Hard Disks'
    VirtualMachinePath    = 'C:\ProgramData\Microsoft\Windows\Hyper-V'
}
# A ghost VM (files gone) makes a parameterless Get-VM write an error for it; with this set, the
# whole listing fails instead (the host notes say real hosts do either).
$script:GhostFailsListing = $false

# The integration services of every VM: id (as in the real Id, after the VM's), name, enabled.
$script:IntegrationServices = @(
    @('6C09BB55-D683-4DA0-8931-C9BF705F6480', 'Guest Service Interface', $false),
    @('84EAAE65-2F2E-45F5-9BB5-0E857DC8EB47', 'Heartbeat', $true),
    @('2A34B1C2-FD73-4043-8A5B-DD2159BC743F', 'Key-Value Pair Exchange', $true),
    @('9F8233AC-BE49-4C79-8EE3-E7E1985B2077', 'Shutdown', $true),
    @('2497F4DE-E9FA-4204-80E4-4B75C46419C0', 'Time Synchronization', $true),
    @('5CED1297-4598-4915-A5FC-AD21BB4D02A4', 'VSS', $true)
)

function Get-SeedValue {
    # A property of the seed file's object, or the default. Collections come back unrolled (a
    # function's output is): callers wrap them, @(Get-SeedValue ...).
    param($Object, [string]$Name, $Default)
    if ($null -eq $Object) { return $Default }
    $property = $Object.PSObject.Properties[$Name]
    if ($null -eq $property -or $null -eq $property.Value) { return $Default }
    return $property.Value
}

function ConvertTo-StubDate {
    # A seed date (ISO 8601 text, or the DateTime PowerShell 7's ConvertFrom-Json made of it) as
    # local time, which is what Hyper-V's objects hold.
    param($Value)
    if ($Value -is [datetime]) { return $Value.ToLocalTime() }
    $styles = [System.Globalization.DateTimeStyles]::AdjustToUniversal -bor [System.Globalization.DateTimeStyles]::AssumeUniversal
    return [datetime]::Parse([string]$Value, [System.Globalization.CultureInfo]::InvariantCulture, $styles).ToLocalTime()
}

function ConvertTo-StubKey {
    param($Id)
    return ([guid]$Id).ToString()
}

function New-StubVMRecord {
    param([string]$Name, [string]$Id, [string]$State, [datetime]$CreationTime, [string]$Path)
    return @{
        Id                           = ConvertTo-StubKey $Id
        Name                         = $Name
        State                        = [Microsoft.HyperV.PowerShell.VMState]$State
        Notes                        = ''
        MemoryStartup                = [long]2147483648
        ProcessorCount               = [long]1
        DynamicMemoryEnabled         = $false
        AutomaticCheckpointsEnabled  = $true
        CheckpointType               = [Microsoft.HyperV.PowerShell.CheckpointType]'Production'
        AutomaticStopAction          = [Microsoft.HyperV.PowerShell.StopAction]'Save'
        EnhancedSessionTransportType = [Microsoft.HyperV.PowerShell.EnhancedSessionTransportType]'VMBus'
        CreationTime                 = $CreationTime
        Generation                   = 2
        Path                         = $Path
        VHDPath                      = ''
        ParentSnapshotId             = $null
        ParentSnapshotName           = ''
        GpuPartition                 = $false
        Broken                       = $false
        StartFailure                 = $null
        HeartbeatStatus              = [Microsoft.HyperV.PowerShell.VMIntegrationComponentOperationalStatus]'Ok'
        Adapters                     = @()
    }
}

function New-StubAdapter {
    param([hashtable]$VMRecord, [string]$Name, [string[]]$IPAddresses, [string]$SwitchName)
    $adapterId = [guid]::NewGuid().ToString().ToUpperInvariant()
    return @{
        Id          = 'Microsoft:{0}\{1}' -f $VMRecord.Id.ToUpperInvariant(), $adapterId
        Name        = $Name
        IPAddresses = [string[]]@($IPAddresses)
        SwitchName  = $SwitchName
        MacAddress  = '00155D' + $adapterId.Substring(0, 6)
    }
}

function Add-StubSnapshot {
    param([hashtable]$VMRecord, [string]$Name, [string]$Id, [datetime]$CreationTime, $State)
    $record = @{
        Id                 = ConvertTo-StubKey $Id
        Name               = $Name
        VMId               = $VMRecord.Id
        CreationTime       = $CreationTime
        State              = [Microsoft.HyperV.PowerShell.VMState]$State
        ParentSnapshotId   = $VMRecord.ParentSnapshotId
        ParentSnapshotName = $VMRecord.ParentSnapshotName
    }
    $script:Snapshots[$record.Id] = $record
    $VMRecord.ParentSnapshotId = $record.Id
    $VMRecord.ParentSnapshotName = $record.Name
    return $record
}

function Import-StubHost {
    param([string]$Path)
    if ([string]::IsNullOrEmpty($Path)) { return }
    $seed = Get-Content -LiteralPath $Path -Raw -Encoding UTF8 | ConvertFrom-Json
    $script:GhostFailsListing = [bool](Get-SeedValue $seed 'GhostFailsListing' $false)
    $hostSeed = Get-SeedValue $seed 'Host' $null
    foreach ($key in @($script:HostInfo.Keys)) {
        $script:HostInfo[$key] = Get-SeedValue $hostSeed $key $script:HostInfo[$key]
    }
    foreach ($vm in @(Get-SeedValue $seed 'VMs' @())) {
        $name = [string](Get-SeedValue $vm 'Name' 'vm')
        $record = New-StubVMRecord -Name $name -Id (Get-SeedValue $vm 'Id' ([guid]::NewGuid().ToString())) `
            -State (Get-SeedValue $vm 'State' 'Off') `
            -CreationTime (ConvertTo-StubDate (Get-SeedValue $vm 'CreationTime' '2024-01-01T00:00:00Z')) `
            -Path (Get-SeedValue $vm 'Path' ('C:\VMs\' + $name))
        $record.Notes = [string](Get-SeedValue $vm 'Notes' '')
        $record.MemoryStartup = [long](Get-SeedValue $vm 'MemoryStartup' $record.MemoryStartup)
        $record.Generation = [int](Get-SeedValue $vm 'Generation' 2)
        $record.Broken = [bool](Get-SeedValue $vm 'Broken' $false)
        $record.HeartbeatStatus = [Microsoft.HyperV.PowerShell.VMIntegrationComponentOperationalStatus](Get-SeedValue $vm 'HeartbeatStatus' 'Ok')
        $failure = Get-SeedValue $vm 'StartFailure' $null
        if ($null -ne $failure) {
            $record.StartFailure = @{
                ErrorId      = [string](Get-SeedValue $failure 'ErrorId' 'OperationFailed')
                Category     = [string](Get-SeedValue $failure 'Category' 'NotSpecified')
                Message      = [string](Get-SeedValue $failure 'Message' 'The operation failed.')
                InnerHResult = [string](Get-SeedValue $failure 'InnerHResult' '')
            }
        }
        $adapters = New-Object System.Collections.ArrayList
        foreach ($adapter in @(Get-SeedValue $vm 'Adapters' @())) {
            $null = $adapters.Add((New-StubAdapter -VMRecord $record -Name ([string](Get-SeedValue $adapter 'Name' 'Network Adapter')) `
                -IPAddresses @(Get-SeedValue $adapter 'IPAddresses' @()) -SwitchName ([string](Get-SeedValue $adapter 'SwitchName' 'Default Switch'))))
        }
        $record.Adapters = @($adapters)
        $script:VMs[$record.Id] = $record
        foreach ($checkpoint in @(Get-SeedValue $vm 'Checkpoints' @())) {
            $null = Add-StubSnapshot -VMRecord $record -Name ([string](Get-SeedValue $checkpoint 'Name' 'checkpoint')) `
                -Id (Get-SeedValue $checkpoint 'Id' ([guid]::NewGuid().ToString())) `
                -CreationTime (ConvertTo-StubDate (Get-SeedValue $checkpoint 'CreationTime' '2024-01-01T00:00:00Z')) `
                -State (Get-SeedValue $checkpoint 'State' 'Running')
        }
    }
}

# -- objects as the real cmdlets return them ---------------------------------------------------

function ConvertTo-StubVM {
    param([hashtable]$Record)
    $running = $Record.State -eq [Microsoft.HyperV.PowerShell.VMState]::Running
    $heartbeat = $null
    $uptime = [timespan]::Zero
    $memoryAssigned = [long]0
    if ($running) {
        $heartbeat = [Microsoft.HyperV.PowerShell.VMHeartbeatStatus]::OkApplicationsHealthy
        $uptime = [timespan]::FromMinutes(5)
        $memoryAssigned = [long]$Record.MemoryStartup
    }
    $parentId = $null
    if ($null -ne $Record.ParentSnapshotId) { $parentId = [guid]$Record.ParentSnapshotId }
    return [pscustomobject]@{
        PSTypeName                   = 'Microsoft.HyperV.PowerShell.VirtualMachine'
        Name                         = [string]$Record.Name
        Id                           = [guid]$Record.Id
        State                        = $Record.State
        Status                       = 'Operating normally'
        Notes                        = [string]$Record.Notes
        MemoryStartup                = [long]$Record.MemoryStartup
        MemoryAssigned               = $memoryAssigned
        ProcessorCount               = [long]$Record.ProcessorCount
        DynamicMemoryEnabled         = [bool]$Record.DynamicMemoryEnabled
        AutomaticCheckpointsEnabled  = [bool]$Record.AutomaticCheckpointsEnabled
        CheckpointType               = $Record.CheckpointType
        AutomaticStopAction          = $Record.AutomaticStopAction
        EnhancedSessionTransportType = $Record.EnhancedSessionTransportType
        Heartbeat                    = $heartbeat
        Uptime                       = $uptime
        CreationTime                 = [datetime]$Record.CreationTime
        Generation                   = [int]$Record.Generation
        Path                         = [string]$Record.Path
        ConfigurationLocation        = [string]$Record.Path
        SnapshotFileLocation         = [string]$Record.Path
        ParentSnapshotId             = $parentId
        ParentSnapshotName           = [string]$Record.ParentSnapshotName
        Version                      = '9.0'
        ComputerName                 = $script:ComputerName
        IsDeleted                    = $false
    }
}

function ConvertTo-StubSnapshot {
    param([hashtable]$Record)
    $vm = $script:VMs[$Record.VMId]
    $parentId = $null
    if ($null -ne $Record.ParentSnapshotId) { $parentId = [guid]$Record.ParentSnapshotId }
    return [pscustomobject]@{
        PSTypeName            = 'Microsoft.HyperV.PowerShell.VMSnapshot'
        Name                  = [string]$Record.Name
        Id                    = [guid]$Record.Id
        VMId                  = [guid]$Record.VMId
        VMName                = [string]$vm.Name
        State                 = $Record.State
        SnapshotType          = [Microsoft.HyperV.PowerShell.SnapshotType]::Standard
        IsAutomaticCheckpoint = $false
        CreationTime          = [datetime]$Record.CreationTime
        ParentSnapshotId      = $parentId
        ParentSnapshotName    = [string]$Record.ParentSnapshotName
        Path                  = [string]$vm.Path
        Notes                 = ''
        ComputerName          = $script:ComputerName
        IsDeleted             = $false
    }
}

function ConvertTo-StubAdapter {
    param([hashtable]$VMRecord, [hashtable]$Adapter)
    return [pscustomobject]@{
        PSTypeName     = 'Microsoft.HyperV.PowerShell.VMNetworkAdapter'
        Name           = [string]$Adapter.Name
        Id             = [string]$Adapter.Id
        VMId           = [guid]$VMRecord.Id
        VMName         = [string]$VMRecord.Name
        SwitchName     = [string]$Adapter.SwitchName
        MacAddress     = [string]$Adapter.MacAddress
        IPAddresses    = [string[]]$Adapter.IPAddresses
        Connected      = $true
        IsLegacy       = $false
        IsManagementOs = $false
        ComputerName   = $script:ComputerName
        IsDeleted      = $false
    }
}

function ConvertTo-StubIntegrationService {
    param([hashtable]$VMRecord, [object[]]$Service)
    $enabled = [bool]$Service[2]
    $status = $null
    if ($enabled -and $VMRecord.State -eq [Microsoft.HyperV.PowerShell.VMState]::Running) {
        $status = [Microsoft.HyperV.PowerShell.VMIntegrationComponentOperationalStatus]::Ok
        if ($Service[1] -eq 'Heartbeat') { $status = $VMRecord.HeartbeatStatus }
    }
    $statusList = @()
    if ($null -ne $status) { $statusList = @($status) }
    return [pscustomobject]@{
        PSTypeName               = 'Microsoft.HyperV.PowerShell.VMIntegrationComponent'
        Name                     = [string]$Service[1]
        Id                       = 'Microsoft:{0}\{1}' -f $VMRecord.Id.ToUpperInvariant(), $Service[0]
        VMId                     = [guid]$VMRecord.Id
        VMName                   = [string]$VMRecord.Name
        Enabled                  = $enabled
        OperationalStatus        = [Microsoft.HyperV.PowerShell.VMIntegrationComponentOperationalStatus[]]$statusList
        PrimaryOperationalStatus = $status
        PrimaryStatusDescription = ''
        ComputerName             = $script:ComputerName
        IsDeleted                = $false
    }
}

# -- errors ------------------------------------------------------------------------------------

function New-StubError {
    # An ErrorRecord as the Hyper-V cmdlets make them: a VirtualizationException (HResult
    # 0x80131500), with a COMException carrying the HRESULT inside when one is given.
    param(
        [Parameter(Mandatory = $true)] [string]$ErrorId,
        [Parameter(Mandatory = $true)] [System.Management.Automation.ErrorCategory]$Category,
        [Parameter(Mandatory = $true)] [string]$Message,
        $Target,
        [string]$InnerHResult,
        [System.Exception]$Exception
    )
    if ($null -eq $Exception) {
        if ([string]::IsNullOrEmpty($InnerHResult)) {
            $Exception = New-Object Microsoft.HyperV.PowerShell.VirtualizationException -ArgumentList $Message
        } else {
            $code = [Convert]::ToInt32(($InnerHResult -replace '^0[xX]', ''), 16)
            $inner = New-Object System.Runtime.InteropServices.COMException -ArgumentList $Message, $code
            $Exception = New-Object Microsoft.HyperV.PowerShell.VirtualizationException -ArgumentList $Message, $inner
        }
    }
    return New-Object System.Management.Automation.ErrorRecord -ArgumentList $Exception, $ErrorId, $Category, $Target
}

function Test-StubStop {
    # Whether a non-terminating error of this cmdlet stops it, decided as for a compiled cmdlet:
    # its -ErrorAction, else the caller's $ErrorActionPreference. A function in a module sees the
    # module's and the global scope's variables, not the caller's (the dispatcher sets 'Stop' in
    # its script scope), so read the caller's through $PSCmdlet.SessionState, which is the session
    # state the cmdlet was called from.
    param([Parameter(Mandatory = $true)] [System.Management.Automation.PSCmdlet]$Cmdlet)
    $bound = $Cmdlet.MyInvocation.BoundParameters
    if ($bound.ContainsKey('ErrorAction')) { return ([string]$bound['ErrorAction'] -eq 'Stop') }
    return ([string]$Cmdlet.SessionState.PSVariable.GetValue('ErrorActionPreference', 'Continue') -eq 'Stop')
}

function New-StubWrongInputError {
    param([string]$Parameter, [string]$TypeName, $Value)
    $message = 'Cannot bind parameter ''{0}'': the argument is not a {1}.' -f $Parameter, $TypeName
    $exception = New-Object System.ArgumentException -ArgumentList $message
    return New-StubError -ErrorId 'CannotConvertArgument' -Category InvalidArgument -Message $message -Target $Value -Exception $exception
}

function Find-StubVMRecord {
    # The record of a VM object a cmdlet was given; $null when the object is not a VM or the VM
    # is gone.
    param($InputObject)
    if ($null -eq $InputObject -or $InputObject.PSObject.TypeNames -notcontains 'Microsoft.HyperV.PowerShell.VirtualMachine') {
        return $null
    }
    $key = ConvertTo-StubKey $InputObject.Id
    if (-not $script:VMs.Contains($key)) { return $null }
    return $script:VMs[$key]
}

function New-StubVMGoneError {
    param($InputObject)
    if ($null -eq $InputObject -or $InputObject.PSObject.TypeNames -notcontains 'Microsoft.HyperV.PowerShell.VirtualMachine') {
        return New-StubWrongInputError -Parameter 'VM' -TypeName 'Microsoft.HyperV.PowerShell.VirtualMachine' -Value $InputObject
    }
    return New-StubError -ErrorId 'ObjectNotFound' -Category ObjectNotFound -Target ([string]$InputObject.Name) `
        -Message ('Hyper-V was unable to find a virtual machine with name "{0}".' -f $InputObject.Name)
}

function Find-StubSnapshotRecord {
    param($InputObject)
    if ($null -eq $InputObject -or $InputObject.PSObject.TypeNames -notcontains 'Microsoft.HyperV.PowerShell.VMSnapshot') {
        return $null
    }
    $key = ConvertTo-StubKey $InputObject.Id
    if (-not $script:Snapshots.Contains($key)) { return $null }
    return $script:Snapshots[$key]
}

function New-StubSnapshotGoneError {
    param($InputObject)
    if ($null -eq $InputObject -or $InputObject.PSObject.TypeNames -notcontains 'Microsoft.HyperV.PowerShell.VMSnapshot') {
        return New-StubWrongInputError -Parameter 'VMSnapshot' -TypeName 'Microsoft.HyperV.PowerShell.VMSnapshot' -Value $InputObject
    }
    return New-StubError -ErrorId 'ObjectNotFound' -Category ObjectNotFound -Target ([string]$InputObject.Name) `
        -Message ('Hyper-V was unable to find a checkpoint named "{0}".' -f $InputObject.Name)
}

function New-StubGhostError {
    param([hashtable]$Record)
    return New-StubError -ErrorId 'ObjectNotFound' -Category ObjectNotFound -Target $Record.Name `
        -Message ("Hyper-V encountered an error trying to access an object on computer '{0}' because the object was not found. The object might have been deleted. (Virtual machine '{1}', configuration file missing.)" -f $script:ComputerName, $Record.Name) `
        -InnerHResult '0x80070002'
}

# -- the call log ------------------------------------------------------------------------------

function ConvertTo-StubLogValue {
    # A bound parameter's value as plain JSON data: switches as booleans, enums by name, Hyper-V
    # objects by their Id, collections as comma-separated text.
    param($Value)
    if ($null -eq $Value) { return $null }
    if ($Value -is [System.Management.Automation.SwitchParameter]) { return $Value.IsPresent }
    if ($Value -is [string] -or $Value -is [bool] -or $Value -is [int] -or $Value -is [long] -or
        $Value -is [int16] -or $Value -is [uint16] -or $Value -is [uint32] -or $Value -is [uint64]) {
        return $Value
    }
    if ($Value -is [System.Enum] -or $Value -is [guid]) { return $Value.ToString() }
    if ($Value -is [System.Collections.IEnumerable]) {
        $texts = @(foreach ($item in $Value) { [string](ConvertTo-StubLogValue $item) })
        return [string]::Join(',', $texts)
    }
    $id = $Value.PSObject.Properties['Id']
    if ($null -ne $id) { return [string]$id.Value }
    return [string]$Value
}

function Write-StubCall {
    param([Parameter(Mandatory = $true)] [System.Management.Automation.InvocationInfo]$Invocation)
    if ([string]::IsNullOrEmpty($script:LogPath)) { return }
    $bound = [ordered]@{}
    $types = [ordered]@{}
    foreach ($key in @($Invocation.BoundParameters.Keys)) {
        $value = $Invocation.BoundParameters[$key]
        $bound[$key] = ConvertTo-StubLogValue $value
        if ($null -ne $value) { $types[$key] = $value.GetType().FullName }
    }
    $entry = [ordered]@{ cmd = $Invocation.MyCommand.Name; bound = $bound; types = $types }
    $line = ConvertTo-Json -InputObject $entry -Depth 4 -Compress
    [System.IO.File]::AppendAllText($script:LogPath, $line + "`n", $script:Utf8)
}

function Set-StubState {
    param([hashtable]$Record, [string]$State)
    $Record.State = [Microsoft.HyperV.PowerShell.VMState]$State
}

# -- the cmdlets ---------------------------------------------------------------------------------
# Only the parameters the dispatcher uses, with the real names, aliases, parameter sets and types
# (tests/test_pester_files.py checks names and aliases against the module data). A VM or checkpoint
# parameter takes the stub's objects, checked by type name.

function Get-VM {
    [CmdletBinding(DefaultParameterSetName = 'Name')]
    param(
        [Parameter(ParameterSetName = 'Name', Position = 0)]
        [Alias('VMName')]
        [ValidateNotNullOrEmpty()]
        [string[]]$Name,

        [Parameter(ParameterSetName = 'Id', Position = 0)]
        [System.Nullable[guid]]$Id
    )
    Write-StubCall -Invocation $MyInvocation
    $found = @()
    if ($PSCmdlet.ParameterSetName -eq 'Id') {
        $key = ConvertTo-StubKey $Id
        if (-not $script:VMs.Contains($key)) {
            $err = New-StubError -ErrorId 'InvalidParameter' -Category InvalidArgument -Target $key `
                -Message ('Hyper-V was unable to find a virtual machine with id "{0}".' -f $key)
            if (Test-StubStop $PSCmdlet) { $PSCmdlet.ThrowTerminatingError($err) }
            $PSCmdlet.WriteError($err)
            return
        }
        $found = @($script:VMs[$key])
    } elseif ($PSBoundParameters.ContainsKey('Name')) {
        foreach ($pattern in $Name) {
            # Hyper-V compares names ignoring case, and -Name takes wildcards.
            $matching = @($script:VMs.Values | Where-Object { $_.Name -like $pattern })
            if ($matching.Count -eq 0 -and -not [System.Management.Automation.WildcardPattern]::ContainsWildcardCharacters($pattern)) {
                $err = New-StubError -ErrorId 'InvalidParameter' -Category InvalidArgument -Target $pattern `
                    -Message ('Hyper-V was unable to find a virtual machine with name "{0}".' -f $pattern)
                if (Test-StubStop $PSCmdlet) { $PSCmdlet.ThrowTerminatingError($err) }
                $PSCmdlet.WriteError($err)
                continue
            }
            $found += $matching
        }
    } else {
        $ghosts = @($script:VMs.Values | Where-Object { $_.Broken })
        if ($script:GhostFailsListing -and $ghosts.Count -gt 0) {
            $PSCmdlet.ThrowTerminatingError((New-StubGhostError $ghosts[0]))
        }
        $found = @($script:VMs.Values)
    }
    foreach ($record in $found) {
        if ($record.Broken) {
            $err = New-StubGhostError $record
            if (Test-StubStop $PSCmdlet) { $PSCmdlet.ThrowTerminatingError($err) }
            $PSCmdlet.WriteError($err)
            continue
        }
        ConvertTo-StubVM $record
    }
}

function New-VM {
    [CmdletBinding(DefaultParameterSetName = 'No VHD')]
    param(
        [Parameter(Position = 0)]
        [Alias('VMName')]
        [string]$Name,

        [Parameter(Position = 1)]
        [System.Nullable[long]]$MemoryStartupBytes,

        [Parameter(Position = 2)]
        [System.Nullable[int16]]$Generation,

        [Parameter(Mandatory = $true, ParameterSetName = 'Existing VHD')]
        [string]$VHDPath,

        [string]$Path,

        [string]$SwitchName
    )
    Write-StubCall -Invocation $MyInvocation
    # New-VM -Path X puts the VM's files in X\<name>.
    $vmPath = Join-Path $Path $Name
    $record = New-StubVMRecord -Name $Name -Id ([guid]::NewGuid().ToString()) -State 'Off' -CreationTime (Get-Date) -Path $vmPath
    if ($null -ne $MemoryStartupBytes) { $record.MemoryStartup = [long]$MemoryStartupBytes }
    if ($null -ne $Generation) { $record.Generation = [int]$Generation }
    $record.VHDPath = $VHDPath
    $switch = ''
    if ($PSBoundParameters.ContainsKey('SwitchName')) { $switch = $SwitchName }
    $record.Adapters = @(New-StubAdapter -VMRecord $record -Name 'Network Adapter' -IPAddresses @() -SwitchName $switch)
    $script:VMs[$record.Id] = $record
    ConvertTo-StubVM $record
}

function Set-VM {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true, ParameterSetName = 'VMObject', Position = 0)]
        [object[]]$VM,

        [string]$Notes,
        [System.Nullable[long]]$ProcessorCount,
        [switch]$StaticMemory,
        [switch]$DynamicMemory,
        [System.Nullable[bool]]$AutomaticCheckpointsEnabled,
        [System.Nullable[Microsoft.HyperV.PowerShell.CheckpointType]]$CheckpointType,
        [System.Nullable[Microsoft.HyperV.PowerShell.StopAction]]$AutomaticStopAction,
        [System.Nullable[Microsoft.HyperV.PowerShell.EnhancedSessionTransportType]]$EnhancedSessionTransportType,
        [switch]$Passthru
    )
    Write-StubCall -Invocation $MyInvocation
    foreach ($item in $VM) {
        $record = Find-StubVMRecord $item
        if ($null -eq $record) { $PSCmdlet.ThrowTerminatingError((New-StubVMGoneError $item)) }
        if ($PSBoundParameters.ContainsKey('Notes')) { $record.Notes = $Notes }
        if ($null -ne $ProcessorCount) { $record.ProcessorCount = [long]$ProcessorCount }
        if ($StaticMemory) { $record.DynamicMemoryEnabled = $false }
        if ($DynamicMemory) { $record.DynamicMemoryEnabled = $true }
        if ($null -ne $AutomaticCheckpointsEnabled) { $record.AutomaticCheckpointsEnabled = [bool]$AutomaticCheckpointsEnabled }
        if ($null -ne $CheckpointType) { $record.CheckpointType = $CheckpointType }
        if ($null -ne $AutomaticStopAction) { $record.AutomaticStopAction = $AutomaticStopAction }
        if ($null -ne $EnhancedSessionTransportType) { $record.EnhancedSessionTransportType = $EnhancedSessionTransportType }
        if ($Passthru) { ConvertTo-StubVM $record }
    }
}

function Start-VM {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true, ParameterSetName = 'VMObject', Position = 0)]
        [object[]]$VM,

        [switch]$Passthru
    )
    Write-StubCall -Invocation $MyInvocation
    foreach ($item in $VM) {
        $record = Find-StubVMRecord $item
        if ($null -eq $record) { $PSCmdlet.ThrowTerminatingError((New-StubVMGoneError $item)) }
        $failure = $record.StartFailure
        if ($null -ne $failure) {
            $err = New-StubError -ErrorId $failure.ErrorId -Category $failure.Category -Target $record.Name `
                -Message $failure.Message -InnerHResult $failure.InnerHResult
            if (Test-StubStop $PSCmdlet) { $PSCmdlet.ThrowTerminatingError($err) }
            $PSCmdlet.WriteError($err)
            continue
        }
        Set-StubState $record 'Running'
        if ($Passthru) { ConvertTo-StubVM $record }
    }
}

function Save-VM {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true, ParameterSetName = 'VMObject', Position = 0)]
        [object[]]$VM,

        [switch]$Passthru
    )
    Write-StubCall -Invocation $MyInvocation
    foreach ($item in $VM) {
        $record = Find-StubVMRecord $item
        if ($null -eq $record) { $PSCmdlet.ThrowTerminatingError((New-StubVMGoneError $item)) }
        Set-StubState $record 'Saved'
        if ($Passthru) { ConvertTo-StubVM $record }
    }
}

function Suspend-VM {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true, ParameterSetName = 'VMObject', Position = 0)]
        [object[]]$VM,

        [switch]$Passthru
    )
    Write-StubCall -Invocation $MyInvocation
    foreach ($item in $VM) {
        $record = Find-StubVMRecord $item
        if ($null -eq $record) { $PSCmdlet.ThrowTerminatingError((New-StubVMGoneError $item)) }
        Set-StubState $record 'Paused'
        if ($Passthru) { ConvertTo-StubVM $record }
    }
}

function Resume-VM {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true, ParameterSetName = 'VMObject', Position = 0)]
        [object[]]$VM,

        [switch]$Passthru
    )
    Write-StubCall -Invocation $MyInvocation
    foreach ($item in $VM) {
        $record = Find-StubVMRecord $item
        if ($null -eq $record) { $PSCmdlet.ThrowTerminatingError((New-StubVMGoneError $item)) }
        Set-StubState $record 'Running'
        if ($Passthru) { ConvertTo-StubVM $record }
    }
}

function Stop-VM {
    [CmdletBinding(SupportsShouldProcess = $true)]
    param(
        [Parameter(Mandatory = $true, ParameterSetName = 'VMObject', Position = 0)]
        [object[]]$VM,

        [switch]$Force,
        [switch]$TurnOff,
        [switch]$Save,
        [switch]$Passthru
    )
    Write-StubCall -Invocation $MyInvocation
    foreach ($item in $VM) {
        $record = Find-StubVMRecord $item
        if ($null -eq $record) { $PSCmdlet.ThrowTerminatingError((New-StubVMGoneError $item)) }
        if (-not $PSCmdlet.ShouldProcess($record.Name, 'Stop-VM')) { continue }
        if ($Save) { Set-StubState $record 'Saved' } else { Set-StubState $record 'Off' }
        if ($Passthru) { ConvertTo-StubVM $record }
    }
}

function Remove-VM {
    # Asks for confirmation (ConfirmImpact High) unless -Force or -Confirm:$false; in the
    # dispatcher's -NonInteractive session a prompt is an error, as on a real host.
    [CmdletBinding(SupportsShouldProcess = $true, ConfirmImpact = 'High')]
    param(
        [Parameter(Mandatory = $true, ParameterSetName = 'VMObject', Position = 0)]
        [object[]]$VM,

        [switch]$Force,
        [switch]$Passthru
    )
    Write-StubCall -Invocation $MyInvocation
    foreach ($item in $VM) {
        $record = Find-StubVMRecord $item
        if ($null -eq $record) { $PSCmdlet.ThrowTerminatingError((New-StubVMGoneError $item)) }
        if (-not ($Force -or $PSCmdlet.ShouldProcess($record.Name, 'Remove-VM'))) { continue }
        foreach ($snapshot in @($script:Snapshots.Values | Where-Object { $_.VMId -eq $record.Id })) {
            $script:Snapshots.Remove($snapshot.Id)
        }
        $script:VMs.Remove($record.Id)
        if ($Passthru) { ConvertTo-StubVM $record }
    }
}

function Get-VMSnapshot {
    [CmdletBinding(DefaultParameterSetName = 'VMObject')]
    param(
        [Parameter(Mandatory = $true, ParameterSetName = 'VMObject', Position = 0)]
        [object[]]$VM,

        [Parameter(Mandatory = $true, ParameterSetName = 'Id', Position = 0)]
        [System.Nullable[guid]]$Id,

        [Parameter(ParameterSetName = 'VMObject', Position = 1)]
        [string]$Name
    )
    Write-StubCall -Invocation $MyInvocation
    if ($PSCmdlet.ParameterSetName -eq 'Id') {
        $key = ConvertTo-StubKey $Id
        if (-not $script:Snapshots.Contains($key)) {
            $err = New-StubError -ErrorId 'ObjectNotFound' -Category ObjectNotFound -Target $key `
                -Message ('Hyper-V was unable to find a checkpoint with id "{0}".' -f $key)
            if (Test-StubStop $PSCmdlet) { $PSCmdlet.ThrowTerminatingError($err) }
            $PSCmdlet.WriteError($err)
            return
        }
        ConvertTo-StubSnapshot $script:Snapshots[$key]
        return
    }
    foreach ($item in $VM) {
        $record = Find-StubVMRecord $item
        if ($null -eq $record) { $PSCmdlet.ThrowTerminatingError((New-StubVMGoneError $item)) }
        # In creation order, as the tests seed them (oldest first).
        $mine = @($script:Snapshots.Values | Where-Object { $_.VMId -eq $record.Id })
        if ($PSBoundParameters.ContainsKey('Name')) {
            $mine = @($mine | Where-Object { $_.Name -like $Name })
            if ($mine.Count -eq 0 -and -not [System.Management.Automation.WildcardPattern]::ContainsWildcardCharacters($Name)) {
                $err = New-StubError -ErrorId 'ObjectNotFound' -Category ObjectNotFound -Target $Name `
                    -Message ('Hyper-V was unable to find a checkpoint named "{0}" for the virtual machine "{1}".' -f $Name, $record.Name)
                if (Test-StubStop $PSCmdlet) { $PSCmdlet.ThrowTerminatingError($err) }
                $PSCmdlet.WriteError($err)
                continue
            }
        }
        foreach ($snapshot in $mine) { ConvertTo-StubSnapshot $snapshot }
    }
}

function Checkpoint-VM {
    [CmdletBinding(SupportsShouldProcess = $true)]
    param(
        [Parameter(Mandatory = $true, ParameterSetName = 'VMObject', Position = 0)]
        [object[]]$VM,

        [Parameter(Position = 1)]
        [Alias('CheckpointName')]
        [string]$SnapshotName,

        [switch]$Passthru
    )
    Write-StubCall -Invocation $MyInvocation
    foreach ($item in $VM) {
        $record = Find-StubVMRecord $item
        if ($null -eq $record) { $PSCmdlet.ThrowTerminatingError((New-StubVMGoneError $item)) }
        if (-not $PSCmdlet.ShouldProcess($record.Name, 'Checkpoint-VM')) { continue }
        $name = $SnapshotName
        if ([string]::IsNullOrEmpty($name)) { $name = '{0} - ({1})' -f $record.Name, (Get-Date).ToString('G') }
        $snapshot = Add-StubSnapshot -VMRecord $record -Name $name -Id ([guid]::NewGuid().ToString()) -CreationTime (Get-Date) -State $record.State
        if ($Passthru) { ConvertTo-StubSnapshot $snapshot }
    }
}

function Restore-VMSnapshot {
    # A standard checkpoint taken while the VM ran holds its memory: applying it leaves the VM
    # Saved. One taken while it was off leaves it Off.
    [CmdletBinding(SupportsShouldProcess = $true, ConfirmImpact = 'High')]
    param(
        [Parameter(Mandatory = $true, ParameterSetName = 'SnapshotObject', Position = 0)]
        [Alias('VMCheckpoint')]
        [object]$VMSnapshot,

        [switch]$Passthru
    )
    Write-StubCall -Invocation $MyInvocation
    $record = Find-StubSnapshotRecord $VMSnapshot
    if ($null -eq $record) { $PSCmdlet.ThrowTerminatingError((New-StubSnapshotGoneError $VMSnapshot)) }
    if (-not $PSCmdlet.ShouldProcess($record.Name, 'Restore-VMSnapshot')) { return }
    $vm = $script:VMs[$record.VMId]
    $withMemory = @('Running', 'Paused') -contains $record.State.ToString()
    if ($withMemory) { Set-StubState $vm 'Saved' } else { Set-StubState $vm 'Off' }
    $vm.ParentSnapshotId = $record.Id
    $vm.ParentSnapshotName = $record.Name
    if ($Passthru) { ConvertTo-StubSnapshot $record }
}

function Remove-VMSnapshot {
    # Merges the checkpoint's differencing disks into its parent's: its children then hang from
    # its parent.
    [CmdletBinding(SupportsShouldProcess = $true)]
    param(
        [Parameter(Mandatory = $true, ParameterSetName = 'SnapshotObject', Position = 0)]
        [Alias('VMCheckpoint')]
        [object[]]$VMSnapshot,

        [Alias('IncludeAllChildCheckpoints')]
        [switch]$IncludeAllChildSnapshots,

        [switch]$Passthru
    )
    Write-StubCall -Invocation $MyInvocation
    foreach ($item in $VMSnapshot) {
        $record = Find-StubSnapshotRecord $item
        if ($null -eq $record) { $PSCmdlet.ThrowTerminatingError((New-StubSnapshotGoneError $item)) }
        if (-not $PSCmdlet.ShouldProcess($record.Name, 'Remove-VMSnapshot')) { continue }
        foreach ($child in @($script:Snapshots.Values | Where-Object { $_.ParentSnapshotId -eq $record.Id })) {
            $child.ParentSnapshotId = $record.ParentSnapshotId
            $child.ParentSnapshotName = $record.ParentSnapshotName
        }
        $vm = $script:VMs[$record.VMId]
        if ($vm.ParentSnapshotId -eq $record.Id) {
            $vm.ParentSnapshotId = $record.ParentSnapshotId
            $vm.ParentSnapshotName = $record.ParentSnapshotName
        }
        $script:Snapshots.Remove($record.Id)
        if ($Passthru) { ConvertTo-StubSnapshot $record }
    }
}

function Get-VMNetworkAdapter {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true, ParameterSetName = 'VMObject', Position = 0)]
        [object[]]$VM,

        [Parameter(Position = 1)]
        [Alias('VMNetworkAdapterName')]
        [string]$Name
    )
    Write-StubCall -Invocation $MyInvocation
    foreach ($item in $VM) {
        $record = Find-StubVMRecord $item
        if ($null -eq $record) { $PSCmdlet.ThrowTerminatingError((New-StubVMGoneError $item)) }
        foreach ($adapter in @($record.Adapters)) {
            if ($PSBoundParameters.ContainsKey('Name') -and $adapter.Name -notlike $Name) { continue }
            ConvertTo-StubAdapter -VMRecord $record -Adapter $adapter
        }
    }
}

function Get-VMIntegrationService {
    # Every service of a VM; a service's status is known only while the VM runs.
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true, ParameterSetName = 'VMObject', Position = 0)]
        [object[]]$VM,

        [Parameter(Position = 1)]
        [string[]]$Name
    )
    Write-StubCall -Invocation $MyInvocation
    foreach ($item in $VM) {
        $record = Find-StubVMRecord $item
        if ($null -eq $record) { $PSCmdlet.ThrowTerminatingError((New-StubVMGoneError $item)) }
        foreach ($service in $script:IntegrationServices) {
            ConvertTo-StubIntegrationService -VMRecord $record -Service $service
        }
    }
}

function Get-VMHost {
    [CmdletBinding()]
    param()
    Write-StubCall -Invocation $MyInvocation
    return [pscustomobject]@{
        PSTypeName                = 'Microsoft.HyperV.PowerShell.VMHost'
        Name                      = $script:ComputerName
        ComputerName              = $script:ComputerName
        FullyQualifiedDomainName  = $script:ComputerName
        LogicalProcessorCount     = [int]$script:HostInfo.LogicalProcessorCount
        MemoryCapacity            = [long]$script:HostInfo.MemoryCapacity
        VirtualHardDiskPath       = [string]$script:HostInfo.VirtualHardDiskPath
        VirtualMachinePath        = [string]$script:HostInfo.VirtualMachinePath
        EnableEnhancedSessionMode = $true
        NumaSpanningEnabled       = $true
        IsDeleted                 = $false
    }
}

function New-VHD {
    # Writes a small text file where the disk would be; the errors are the ones real hosts give
    # for a file that exists and a parent that does not.
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true, Position = 0)]
        [string[]]$Path,

        [Parameter(Mandatory = $true, ParameterSetName = 'Differencing', Position = 1)]
        [string]$ParentPath,

        [Parameter(ParameterSetName = 'Differencing')]
        [switch]$Differencing
    )
    Write-StubCall -Invocation $MyInvocation
    foreach ($file in $Path) {
        if (-not (Test-Path -LiteralPath $ParentPath -PathType Leaf)) {
            $err = New-StubError -ErrorId 'ObjectNotFound' -Category ObjectNotFound -Target $ParentPath -InnerHResult '0x80070002' `
                -Message ("Failed to create the virtual hard disk. The system cannot find the file '{0}'." -f $ParentPath)
            if (Test-StubStop $PSCmdlet) { $PSCmdlet.ThrowTerminatingError($err) }
            $PSCmdlet.WriteError($err)
            continue
        }
        if (Test-Path -LiteralPath $file) {
            $err = New-StubError -ErrorId 'OperationFailed' -Category NotSpecified -Target $file -InnerHResult '0x80070050' `
                -Message ("Failed to create the virtual hard disk. The system failed to create '{0}': The file exists. (0x80070050)." -f $file)
            if (Test-StubStop $PSCmdlet) { $PSCmdlet.ThrowTerminatingError($err) }
            $PSCmdlet.WriteError($err)
            continue
        }
        [System.IO.File]::WriteAllText($file, ("hvkube stub differencing disk`nparent: {0}`n" -f $ParentPath), $script:Utf8)
        [pscustomobject]@{
            PSTypeName   = 'Microsoft.Vhd.PowerShell.VirtualHardDisk'
            Path         = $file
            ParentPath   = $ParentPath
            VhdType      = [Microsoft.Vhd.PowerShell.VhdType]::Differencing
            VhdFormat    = [Microsoft.Vhd.PowerShell.VhdFormat]::VHDX
            FileSize     = [uint64](New-Object System.IO.FileInfo $file).Length
            Size         = [uint64]137438953472
            Attached     = $false
            ComputerName = $script:ComputerName
        }
    }
}

function Add-VMGpuPartitionAdapter {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true, ParameterSetName = 'VMObject', Position = 0)]
        [object[]]$VM,

        [switch]$Passthru
    )
    Write-StubCall -Invocation $MyInvocation
    foreach ($item in $VM) {
        $record = Find-StubVMRecord $item
        if ($null -eq $record) { $PSCmdlet.ThrowTerminatingError((New-StubVMGoneError $item)) }
        $record.GpuPartition = $true
    }
}

Import-StubHost -Path $env:HVKUBE_STUB_HOST

Export-ModuleMember -Function @(
    'Get-VM', 'New-VM', 'Set-VM', 'Start-VM', 'Save-VM', 'Suspend-VM', 'Resume-VM', 'Stop-VM',
    'Remove-VM', 'Get-VMSnapshot', 'Checkpoint-VM', 'Restore-VMSnapshot', 'Remove-VMSnapshot',
    'Get-VMNetworkAdapter', 'Get-VMIntegrationService', 'Get-VMHost', 'New-VHD',
    'Add-VMGpuPartitionAdapter'
)

# The WMI side (keyboard, mouse, screen, KVP, jobs), into the global scope: see the top.
Import-Module -Name (Join-Path (Split-Path -Parent $PSScriptRoot) 'HvkubeCimStub\HvkubeCimStub.psm1') -Global
