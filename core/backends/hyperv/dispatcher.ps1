# hvkube Hyper-V dispatcher.
#
# Started once per session by hvkube (powershell.exe -File dispatcher.ps1) and
# kept running. It reads one request per line from stdin:
#
#     HVKUBE-REQ {"id":"<nonce>","op":"<operation>","data":{...}}
#
# runs the operation named in the fixed allow-list $Ops below, with the
# request's data splatted as the operation's parameters, and writes one line:
#
#     HVKUBE-RES <nonce> {"ok":true,"result":...}
#     HVKUBE-RES <nonce> {"ok":false,"error":{"message","fqid","category","type","hresults",...}}
#
# Request values are only ever data: they are bound to typed parameters and
# passed to cmdlets as arguments. Nothing from a request is parsed as code.
# Enums are stringified here ("$($vm.State)") so Python maps them by name.

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$WarningPreference = 'SilentlyContinue'
$InformationPreference = 'SilentlyContinue'
Set-StrictMode -Version 2.0

$Utf8 = New-Object System.Text.UTF8Encoding $false
[Console]::InputEncoding = $Utf8
[Console]::OutputEncoding = $Utf8
$Stdout = New-Object System.IO.StreamWriter ([Console]::OpenStandardOutput()), $Utf8
$Stdout.AutoFlush = $true
$Stdout.NewLine = "`n"

$Namespace = 'root\virtualization\v2'
$HeartbeatServiceId = '84EAAE65-2F2E-45F5-9BB5-0E857DC8EB47'
$ModuleError = $null
try {
    Import-Module Hyper-V -ErrorAction Stop
} catch {
    $ModuleError = $_.Exception.Message
}

# -- helpers -----------------------------------------------------------------------------------

function Stop-Hv {
    # Raise an error record with a fixed id the Python side classifies.
    [CmdletBinding()]
    param([string]$Id, [System.Management.Automation.ErrorCategory]$Category, [string]$Message, $Target)
    $exception = New-Object System.InvalidOperationException $Message
    $record = New-Object System.Management.Automation.ErrorRecord $exception, $Id, $Category, $Target
    $PSCmdlet.ThrowTerminatingError($record)
}

function Find-HvVM {
    # The VM with exactly this name, or $null. Get-VM -Name takes wildcards: never use it.
    param([string]$Name)
    $found = @(Hyper-V\Get-VM | Where-Object { $_.Name -eq $Name })
    if ($found.Count -gt 1) {
        Stop-Hv -Id 'HvkubeAmbiguousName' -Category InvalidData -Target $Name `
            -Message ("{0} virtual machines are named '{1}'; hvkube needs unique names" -f $found.Count, $Name)
    }
    if ($found.Count -eq 0) { return $null }
    return $found[0]
}

function Get-HvVM {
    param([string]$Name)
    $vm = Find-HvVM -Name $Name
    if ($null -eq $vm) {
        Stop-Hv -Id 'HvkubeVMNotFound' -Category ObjectNotFound -Target $Name `
            -Message ("Hyper-V has no virtual machine named '{0}'" -f $Name)
    }
    return $vm
}

function Get-HvCheckpoints {
    param($VM, [string]$Checkpoint)
    # -Name would take wildcards; filter by exact, case-sensitive name instead.
    return @(Hyper-V\Get-VMSnapshot -VM $VM | Where-Object { $_.Name -ceq $Checkpoint } |
        Sort-Object CreationTime)
}

function ConvertTo-HvRecord {
    param($VM)
    $checkpoints = @(Hyper-V\Get-VMSnapshot -VM $VM | ForEach-Object { [string]$_.Name })
    return [ordered]@{
        Name          = [string]$VM.Name
        Id            = [string]$VM.Id
        State         = "$($VM.State)"
        Status        = [string]$VM.Status
        Heartbeat     = "$($VM.Heartbeat)"
        MemoryAssigned = [long]$VM.MemoryAssigned
        MemoryStartup = [long]$VM.MemoryStartup
        UptimeSeconds = [double]$VM.Uptime.TotalSeconds
        CreationTime  = $VM.CreationTime.ToUniversalTime().ToString('o')
        Generation    = [int]$VM.Generation
        Checkpoints   = $checkpoints
    }
}

function Get-HvComputerSystem {
    param($VM)
    # The filter is built from the VM's Id, a [guid] Hyper-V returned: hex digits and dashes only.
    $id = ([guid]$VM.Id).ToString()
    $cs = Get-CimInstance -Namespace $Namespace -ClassName Msvm_ComputerSystem -Filter ("Name='{0}'" -f $id)
    if ($null -eq $cs) {
        Stop-Hv -Id 'HvkubeVMNotFound' -Category ObjectNotFound -Target $VM.Name `
            -Message ("WMI has no Msvm_ComputerSystem for '{0}'" -f $VM.Name)
    }
    return $cs
}

function Wait-HvJob {
    # Complete a WMI method call: 0 done, 4096 a job to poll, anything else an error code.
    param($Result, [string]$What, [int]$TimeoutSeconds = 120)
    $code = [int]$Result.ReturnValue
    if ($code -eq 4096) {
        $job = Get-CimInstance -InputObject $Result.Job
        $deadline = (Get-Date).AddSeconds($TimeoutSeconds)
        while ($job.JobState -eq 3 -or $job.JobState -eq 4) {
            if ((Get-Date) -gt $deadline) {
                Stop-Hv -Id 'HvkubeTimeout' -Category OperationTimeout -Target $What `
                    -Message ("{0} did not finish within {1} s" -f $What, $TimeoutSeconds)
            }
            Start-Sleep -Milliseconds 100
            $job = Get-CimInstance -InputObject $job
        }
        if ($job.JobState -ne 7) {
            $exception = New-Object System.InvalidOperationException ("{0} failed: {1}" -f $What, $job.ErrorDescription)
            $record = New-Object System.Management.Automation.ErrorRecord $exception, ('HvkubeWmi' + [int]$job.ErrorCode), 'NotSpecified', $What
            $record.ErrorDetails = New-Object System.Management.Automation.ErrorDetails ("wmiCode=" + [int]$job.ErrorCode)
            throw $record
        }
        return
    }
    if ($code -ne 0) {
        $exception = New-Object System.InvalidOperationException ("{0} failed with WMI return value {1}" -f $What, $code)
        $record = New-Object System.Management.Automation.ErrorRecord $exception, ('HvkubeWmi' + $code), 'NotSpecified', $What
        $record.ErrorDetails = New-Object System.Management.Automation.ErrorDetails ("wmiCode=" + $code)
        throw $record
    }
}

function Get-HvDevice {
    param($VM, [string]$ClassName)
    $cs = Get-HvComputerSystem -VM $VM
    $device = Get-CimAssociatedInstance -InputObject $cs -ResultClassName $ClassName | Select-Object -First 1
    if ($null -eq $device) {
        Stop-Hv -Id 'HvkubeInvalidState' -Category InvalidOperation -Target $VM.Name `
            -Message ("'{0}' has no {1} now (is it running?)" -f $VM.Name, $ClassName)
    }
    return $device
}

# -- operations: the allow-list ----------------------------------------------------------------
# Each entry takes named parameters only; the request's data is splatted into them.

$Ops = @{
    'ping' = {
        return [ordered]@{ pong = $true; ps = $PSVersionTable.PSVersion.ToString() }
    }

    'host_info' = {
        $vmhost = Hyper-V\Get-VMHost
        $os = Get-CimInstance -ClassName Win32_OperatingSystem
        return [ordered]@{
            TotalMemoryBytes      = [long]$vmhost.MemoryCapacity
            FreeMemoryKB          = [long]$os.FreePhysicalMemory
            LogicalProcessorCount = [int]$vmhost.LogicalProcessorCount
            VirtualHardDiskPath   = [string]$vmhost.VirtualHardDiskPath
            VirtualMachinePath    = [string]$vmhost.VirtualMachinePath
        }
    }

    'vm_list' = {
        param([string]$Prefix = '')
        $vms = @(Hyper-V\Get-VM | Where-Object { $Prefix -eq '' -or $_.Name.StartsWith($Prefix, [StringComparison]::Ordinal) })
        return , @($vms | ForEach-Object { ConvertTo-HvRecord -VM $_ })
    }

    'vm_get' = {
        param([string]$Name)
        $vm = Find-HvVM -Name $Name
        if ($null -eq $vm) { return $null }
        return ConvertTo-HvRecord -VM $vm
    }

    'disk_new_diff' = {
        param([string]$Path, [string]$ParentPath)
        $folder = Split-Path -Parent $Path
        if (-not (Test-Path -LiteralPath $folder)) { New-Item -ItemType Directory -Path $folder | Out-Null }
        Hyper-V\New-VHD -Path $Path -ParentPath $ParentPath -Differencing | Out-Null
        return $null
    }

    'disk_remove' = {
        param([string]$Path)
        if (Test-Path -LiteralPath $Path) { Remove-Item -LiteralPath $Path -Force }
        return $null
    }

    'vm_new' = {
        param([string]$Name, [string]$DiskPath, [long]$MemoryBytes, [int]$Cpus, [bool]$DynamicMemory,
              [string]$SwitchName = '', [string]$Path = '', [bool]$Gpu, [bool]$EnhancedSession)
        if ($null -ne (Find-HvVM -Name $Name)) {
            Stop-Hv -Id 'HvkubeAlreadyExists' -Category ResourceExists -Target $Name `
                -Message ("a virtual machine named '{0}' already exists" -f $Name)
        }
        $new = @{ Name = $Name; Generation = 2; MemoryStartupBytes = $MemoryBytes; VHDPath = $DiskPath }
        if ($SwitchName -ne '') { $new['SwitchName'] = $SwitchName }
        if ($Path -ne '') { $new['Path'] = $Path }
        $vm = Hyper-V\New-VM @new
        $set = @{
            VM                          = $vm
            ProcessorCount              = $Cpus
            AutomaticCheckpointsEnabled = $false
            CheckpointType              = 'Standard'
            AutomaticStopAction         = 'Save'
        }
        if ($DynamicMemory) { $set['DynamicMemory'] = $true } else { $set['StaticMemory'] = $true }
        if ($EnhancedSession) { $set['EnhancedSessionTransportType'] = 'HvSocket' }
        Hyper-V\Set-VM @set
        if ($Gpu) { Hyper-V\Add-VMGpuPartitionAdapter -VM $vm }
        return $null
    }

    'vm_start' = {
        param([string]$Name)
        Hyper-V\Start-VM -VM (Get-HvVM -Name $Name)
        return $null
    }

    'vm_save' = {
        param([string]$Name)
        Hyper-V\Save-VM -VM (Get-HvVM -Name $Name)
        return $null
    }

    'vm_pause' = {
        param([string]$Name)
        Hyper-V\Suspend-VM -VM (Get-HvVM -Name $Name)
        return $null
    }

    'vm_unpause' = {
        param([string]$Name)
        Hyper-V\Resume-VM -VM (Get-HvVM -Name $Name)
        return $null
    }

    'vm_stop' = {
        param([string]$Name, [bool]$Force)
        $vm = Get-HvVM -Name $Name
        if ("$($vm.State)" -eq 'Off') { return $null }
        if ($Force) {
            Hyper-V\Stop-VM -VM $vm -TurnOff -Force -Confirm:$false
        } else {
            Hyper-V\Stop-VM -VM $vm -Force -Confirm:$false
        }
        return $null
    }

    'vm_remove' = {
        param([string]$Name)
        $vm = Get-HvVM -Name $Name
        if ("$($vm.State)" -ne 'Off') { Hyper-V\Stop-VM -VM $vm -TurnOff -Force -Confirm:$false }
        # Remove-VMSnapshot merges differencing checkpoint disks; never delete .avhdx by hand.
        Hyper-V\Get-VMSnapshot -VM $vm | Hyper-V\Remove-VMSnapshot -Confirm:$false
        $disks = @(Hyper-V\Get-VMHardDiskDrive -VM $vm | ForEach-Object { [string]$_.Path })
        Hyper-V\Remove-VM -VM $vm -Force -Confirm:$false
        foreach ($disk in $disks) {
            if ($disk -ne '' -and (Test-Path -LiteralPath $disk)) { Remove-Item -LiteralPath $disk -Force }
        }
        return $null
    }

    'checkpoint_new' = {
        param([string]$Name, [string]$Checkpoint)
        $vm = Get-HvVM -Name $Name
        $older = Get-HvCheckpoints -VM $vm -Checkpoint $Checkpoint
        Hyper-V\Checkpoint-VM -VM $vm -SnapshotName $Checkpoint -Confirm:$false
        # One checkpoint per name: replace the older ones with the same name.
        foreach ($snapshot in $older) { Hyper-V\Remove-VMSnapshot -VMSnapshot $snapshot -Confirm:$false }
        return $null
    }

    'checkpoint_restore' = {
        param([string]$Name, [string]$Checkpoint)
        $vm = Get-HvVM -Name $Name
        $found = Get-HvCheckpoints -VM $vm -Checkpoint $Checkpoint
        if ($found.Count -eq 0) {
            Stop-Hv -Id 'HvkubeCheckpointNotFound' -Category ObjectNotFound -Target $Name `
                -Message ("'{0}' has no checkpoint named '{1}'" -f $Name, $Checkpoint)
        }
        Hyper-V\Restore-VMSnapshot -VMSnapshot $found[-1] -Confirm:$false
        return $null
    }

    'checkpoint_remove' = {
        param([string]$Name, [string]$Checkpoint)
        $vm = Get-HvVM -Name $Name
        foreach ($snapshot in (Get-HvCheckpoints -VM $vm -Checkpoint $Checkpoint)) {
            Hyper-V\Remove-VMSnapshot -VMSnapshot $snapshot -Confirm:$false
        }
        return $null
    }

    'vm_ip' = {
        param([string]$Name)
        $vm = Get-HvVM -Name $Name
        $addresses = @(Hyper-V\Get-VMNetworkAdapter -VM $vm | ForEach-Object { @($_.IPAddresses) } |
            ForEach-Object { [string]$_ })
        $kvp = $null
        if ("$($vm.State)" -eq 'Running') {
            # Fallback: the guest's own report through the KVP exchange (intrinsic items).
            try {
                $component = Get-HvDevice -VM $vm -ClassName Msvm_KvpExchangeComponent
                foreach ($item in @($component.GuestIntrinsicExchangeItems)) {
                    $xml = [xml]$item
                    $key = $xml.SelectSingleNode("/INSTANCE/PROPERTY[@NAME='Name']/VALUE")
                    if ($null -ne $key -and $key.InnerText -eq 'NetworkAddressIPv4') {
                        $kvp = $xml.SelectSingleNode("/INSTANCE/PROPERTY[@NAME='Data']/VALUE").InnerText
                    }
                }
            } catch {
                $kvp = $null
            }
        }
        return [ordered]@{ State = "$($vm.State)"; Addresses = $addresses; KvpIPv4 = $kvp }
    }

    'vm_heartbeat' = {
        param([string]$Name)
        $vm = Get-HvVM -Name $Name
        # Match the service by its ID: its name is localised.
        $service = Hyper-V\Get-VMIntegrationService -VM $vm |
            Where-Object { ([string]$_.Id).ToUpperInvariant().EndsWith('\' + $HeartbeatServiceId) } |
            Select-Object -First 1
        $result = [ordered]@{ State = "$($vm.State)"; Heartbeat = "$($vm.Heartbeat)"; Found = $false }
        if ($null -ne $service) {
            $result['Found'] = $true
            $result['Enabled'] = [bool]$service.Enabled
            $result['PrimaryStatus'] = "$($service.PrimaryOperationalStatus)"
        }
        return $result
    }

    'vm_saved_state' = {
        param([string]$Name)
        $vm = Get-HvVM -Name $Name
        if ("$($vm.State)" -ne 'Saved') { return $null }
        # Configuration version 6+ keeps the runtime state beside the configuration, named by VM Id.
        $candidate = Join-Path $vm.ConfigurationLocation ('Virtual Machines\{0}.vmrs' -f ([guid]$vm.Id))
        if (Test-Path -LiteralPath $candidate) { return $candidate }
        return $null
    }

    'vm_screenshot' = {
        param([string]$Name)
        $vm = Get-HvVM -Name $Name
        $cs = Get-HvComputerSystem -VM $vm
        $head = Get-HvDevice -VM $vm -ClassName Msvm_VideoHead
        $width = [uint16]$head.CurrentHorizontalResolution
        $height = [uint16]$head.CurrentVerticalResolution
        if ($width -eq 0 -or $height -eq 0) { $width = 640; $height = 480 }
        $settings = Get-CimAssociatedInstance -InputObject $cs -ResultClassName Msvm_VirtualSystemSettingData |
            Where-Object { $_.VirtualSystemType -eq 'Microsoft:Hyper-V:System:Realized' } | Select-Object -First 1
        $service = Get-CimInstance -Namespace $Namespace -ClassName Msvm_VirtualSystemManagementService
        $result = Invoke-CimMethod -InputObject $service -MethodName GetVirtualSystemThumbnailImage -Arguments @{
            TargetSystem = $settings; WidthPixels = $width; HeightPixels = $height
        }
        Wait-HvJob -Result $result -What 'GetVirtualSystemThumbnailImage'
        return [ordered]@{
            Width  = [int]$width
            Height = [int]$height
            Format = 'RGB565'
            Data   = [Convert]::ToBase64String([byte[]]$result.ImageData)
        }
    }

    'vm_type_text' = {
        param([string]$Name, [string]$Text)
        $keyboard = Get-HvDevice -VM (Get-HvVM -Name $Name) -ClassName Msvm_Keyboard
        $result = Invoke-CimMethod -InputObject $keyboard -MethodName TypeText -Arguments @{ asciiText = $Text }
        Wait-HvJob -Result $result -What 'TypeText'
        return $null
    }

    'vm_type_key' = {
        param([string]$Name, [int]$KeyCode)
        $keyboard = Get-HvDevice -VM (Get-HvVM -Name $Name) -ClassName Msvm_Keyboard
        $result = Invoke-CimMethod -InputObject $keyboard -MethodName TypeKey -Arguments @{ keyCode = [uint32]$KeyCode }
        Wait-HvJob -Result $result -What 'TypeKey'
        return $null
    }

    'vm_ctrl_alt_del' = {
        param([string]$Name)
        $keyboard = Get-HvDevice -VM (Get-HvVM -Name $Name) -ClassName Msvm_Keyboard
        $result = Invoke-CimMethod -InputObject $keyboard -MethodName TypeCtrlAltDel
        Wait-HvJob -Result $result -What 'TypeCtrlAltDel'
        return $null
    }

    'vm_mouse_click' = {
        param([string]$Name, [int]$X, [int]$Y, [int]$Button, [bool]$Click = $true)
        $mouse = Get-HvDevice -VM (Get-HvVM -Name $Name) -ClassName Msvm_SyntheticMouse
        $result = Invoke-CimMethod -InputObject $mouse -MethodName SetAbsolutePosition -Arguments @{
            horizontalPosition = $X; verticalPosition = $Y
        }
        Wait-HvJob -Result $result -What 'SetAbsolutePosition'
        if ($Click) {
            $result = Invoke-CimMethod -InputObject $mouse -MethodName ClickButton -Arguments @{ buttonIndex = $Button }
            Wait-HvJob -Result $result -What 'ClickButton'
        }
        return $null
    }
}

# -- the loop ----------------------------------------------------------------------------------

function Write-Frame {
    param([string]$Id, $Message)
    $json = ConvertTo-Json -InputObject $Message -Depth 6 -Compress
    $Stdout.WriteLine('HVKUBE-RES ' + $Id + ' ' + $json)
}

function Get-ErrorPayload {
    param($Record)
    $exception = $Record.Exception
    $hresults = @()
    $inner = $exception
    while ($null -ne $inner) {
        $hresults += ('0x{0:X8}' -f $inner.HResult)
        $inner = $inner.InnerException
    }
    $payload = [ordered]@{
        message  = [string]$exception.Message
        fqid     = [string]$Record.FullyQualifiedErrorId
        category = "$($Record.CategoryInfo.Category)"
        type     = $exception.GetType().FullName
        hresults = $hresults
        target   = [string]$Record.TargetObject
    }
    if ($null -ne $Record.ErrorDetails -and ([string]$Record.ErrorDetails.Message) -match '^wmiCode=(\d+)$') {
        $payload['wmiCode'] = [int]$Matches[1]
    }
    return $payload
}

$ready = [ordered]@{
    protocol    = 1
    ps          = $PSVersionTable.PSVersion.ToString()
    edition     = [string]$PSVersionTable['PSEdition']
    moduleError = $ModuleError
    ops         = @($Ops.Keys | Sort-Object)
}
$Stdout.WriteLine('HVKUBE-READY ' + (ConvertTo-Json -InputObject $ready -Depth 3 -Compress))

while ($true) {
    $line = [Console]::In.ReadLine()
    if ($null -eq $line) { break }
    if (-not $line.StartsWith('HVKUBE-REQ ')) { continue }
    $id = 'unknown'
    try {
        $request = ConvertFrom-Json -InputObject $line.Substring(11)
        $id = [string]$request.id
        if ($id -notmatch '^[0-9a-f]{1,64}$') { $id = 'unknown'; throw 'request id is not a hex nonce' }
        $op = [string]$request.op
        if (-not $Ops.ContainsKey($op)) {
            Stop-Hv -Id 'HvkubeUnknownOperation' -Category InvalidArgument -Target $op `
                -Message ("'{0}' is not an operation of this dispatcher" -f $op)
        }
        $params = @{}
        if ($null -ne $request.data) {
            foreach ($property in $request.data.PSObject.Properties) { $params[$property.Name] = $property.Value }
        }
        $result = & $Ops[$op] @params
        Write-Frame -Id $id -Message ([ordered]@{ ok = $true; result = $result })
    } catch {
        Write-Frame -Id $id -Message ([ordered]@{ ok = $false; error = (Get-ErrorPayload -Record $_) })
    }
}
